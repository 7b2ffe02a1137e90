// Splitting and compacting the generator's batch around its big sets (see nft_bigsets.h).

#include "config/nft_bigsets.h"

#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <functional>

namespace tp::config {

namespace {

constexpr std::string_view kElementsOpen = "\t\telements = {\n";
constexpr std::string_view kElementsClose = "\t\t}\n";

// One top-level object of the table body: "\tKIND NAME {\n" ... "\t}\n".
struct Object {
    std::string kind, name;
    size_t begin = 0, end = 0;              // the whole object, lines included
    size_t elems_open = std::string::npos;  // offset of kElementsOpen within the batch
    size_t elems_begin = 0, elems_end = 0;  // element lines
    size_t elems_close_end = 0;             // just past kElementsClose
    size_t elements = 0;
    int family = 0;
    bool interval = false;
};

std::string_view line_at(const std::string& s, size_t p, size_t* next) {
    size_t nl = s.find('\n', p);
    *next = nl == std::string::npos ? s.size() : nl + 1;
    return std::string_view(s.data() + p, *next - p);
}

// The table name and the objects of a generator batch, or false when it is not one.
bool scan(const std::string& batch, std::string* table, std::vector<Object>* objects,
          size_t* body_begin) {
    const std::string add = "add table inet ";
    if (batch.rfind(add, 0) != 0) {
        return false;
    }
    size_t nl = batch.find('\n');
    *table = batch.substr(add.size(), nl - add.size());
    std::string head =
        add + *table + "\ndelete table inet " + *table + "\ntable inet " + *table + " {\n";
    if (batch.rfind(head, 0) != 0 || batch.size() < head.size() + 2 ||
        batch.compare(batch.size() - 3, 3, "\n}\n") != 0) {
        return false;
    }
    *body_begin = head.size();
    size_t p = head.size();
    const size_t body_end = batch.size() - 2;
    while (p < body_end) {
        size_t next;
        std::string_view l = line_at(batch, p, &next);
        if (l.size() < 4 || l[0] != '\t' || l[1] == '\t' || l.substr(l.size() - 3) != " {\n") {
            return false;
        }
        Object o;
        o.begin = p;
        std::string_view words = l.substr(1, l.size() - 4);
        size_t sp = words.find(' ');
        if (sp == std::string_view::npos) {
            return false;
        }
        o.kind = std::string(words.substr(0, sp));
        o.name = std::string(words.substr(sp + 1));
        p = next;
        bool closed = false;
        while (p < body_end) {
            l = line_at(batch, p, &next);
            if (l == "\t}\n") {
                closed = true;
                p = next;
                break;
            }
            if (o.kind == "set" && l == "\t\ttype ipv4_addr\n") {
                o.family = AF_INET;
            } else if (o.kind == "set" && l == "\t\ttype ipv6_addr\n") {
                o.family = AF_INET6;
            } else if (o.kind == "set" && l == "\t\tflags interval\n") {
                o.interval = true;
            } else if (o.kind == "set" && l == kElementsOpen) {
                o.elems_open = p;
                o.elems_begin = next;
                p = next;
                while (p < body_end) {
                    l = line_at(batch, p, &next);
                    if (l == kElementsClose) {
                        break;
                    }
                    if (l.rfind("\t\t\t", 0) != 0) {
                        return false;
                    }
                    ++o.elements;
                    p = next;
                }
                o.elems_end = p;
                o.elems_close_end = next;
            }
            p = next;
        }
        if (!closed) {
            return false;
        }
        o.end = p;
        objects->push_back(std::move(o));
    }
    return true;
}

bool is_big(const Object& o, size_t min_elements) {
    return o.kind == "set" && o.family != 0 && o.elems_open != std::string::npos &&
           o.elements >= min_elements;
}

// The object's text without its element block.
void append_without_elements(std::string& out, const std::string& batch, const Object& o) {
    out.append(batch, o.begin, o.elems_open - o.begin);
    out.append(batch, o.elems_close_end, o.end - o.elems_close_end);
}

// A big set as the running process keeps it: its declaration, its element lines replaced by
// their count and hash.
std::string compact_object(const std::string& batch, const Object& o) {
    std::string_view elems(batch.data() + o.elems_begin, o.elems_end - o.elems_begin);
    std::string out(batch, o.begin, o.elems_begin - o.begin);
    out += "\t\t\t# " + std::to_string(o.elements) + " elements, hash " + text_hash(elems) + "\n";
    out.append(batch, o.elems_end, o.end - o.elems_end);
    return out;
}

// The batch again, each top-level object passed through `each(object, out)`, which appends
// what stays of it; a text that is not a generator batch comes back unchanged.
template <typename Each>
std::string rewrite_objects(const std::string& batch, Each&& each) {
    std::string table;
    std::vector<Object> objects;
    size_t body = 0;
    if (!scan(batch, &table, &objects, &body)) {
        return batch;
    }
    std::string out(batch, 0, body);
    for (const Object& o : objects) {
        each(o, out);
    }
    return out + "}\n";
}

}  // namespace

std::optional<SplitBatch> split_big_sets(const std::string& batch, size_t min_elements) {
    SplitBatch s;
    std::vector<Object> objects;
    size_t body = 0;
    if (!scan(batch, &s.table, &objects, &body)) {
        return std::nullopt;
    }
    std::string chains;
    s.skeleton.assign(batch, 0, body);
    s.sets_stage.assign(batch, 0, body);
    for (const Object& o : objects) {
        if (is_big(o, min_elements)) {
            append_without_elements(s.skeleton, batch, o);
            append_without_elements(s.sets_stage, batch, o);
            s.sets.push_back(
                {o.name, o.family, o.elems_begin, o.elems_end, o.elements, o.interval});
            continue;
        }
        s.skeleton.append(batch, o.begin, o.end - o.begin);
        (o.kind == "chain" ? chains : s.sets_stage).append(batch, o.begin, o.end - o.begin);
    }
    if (s.sets.empty()) {
        return std::nullopt;
    }
    s.skeleton += "}\n";
    s.sets_stage += "}\n";
    s.rules_stage = "table inet " + s.table + " {\n" + chains + "}\n";
    return s;
}

std::string compact_batch(const std::string& batch, size_t min_elements) {
    return rewrite_objects(batch, [&](const Object& o, std::string& out) {
        if (is_big(o, min_elements)) {
            out += compact_object(batch, o);
        } else {
            out.append(batch, o.begin, o.end - o.begin);
        }
    });
}

std::string without_unchanged_sets(const std::string& compact_current,
                                   const std::string& next_batch,
                                   std::vector<std::string>* unchanged, size_t min_elements) {
    return rewrite_objects(next_batch, [&](const Object& o, std::string& out) {
        if (is_big(o, min_elements) &&
            compact_current.find(compact_object(next_batch, o)) != std::string::npos) {
            // Not even declared: for an auto-merge set, libnftables would read all its
            // elements back from the kernel first (seconds and ~1 KiB an element).
            unchanged->push_back(o.name);
            return;
        }
        out.append(next_batch, o.begin, o.end - o.begin);
    });
}

namespace {

bool ident_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '.' || c == '-' ||
           c == '/';
}

bool listed(const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

std::string rename_sets(const std::string& batch, const std::map<std::string, std::string>& names) {
    std::string table;
    std::vector<Object> objects;
    size_t body = 0;
    if (names.empty() || !scan(batch, &table, &objects, &body)) {
        return batch;
    }
    std::string out(batch, 0, body);
    out.reserve(batch.size() + 64);
    for (const Object& o : objects) {
        auto it = o.kind == "set" ? names.find(o.name) : names.end();
        size_t p = o.begin;
        if (it != names.end()) {
            out += "\tset " + it->second + " {\n";
            p = batch.find('\n', o.begin) + 1;
        }
        // Element lines hold no references: copied whole.
        size_t stop = o.elems_open != std::string::npos ? o.elems_begin : o.end;
        for (size_t at; (at = batch.find('@', p)) < stop;) {
            size_t e = at + 1;
            while (e < stop && ident_char(batch[e])) {
                ++e;
            }
            auto ref = names.find(batch.substr(at + 1, e - at - 1));
            out.append(batch, p, at + 1 - p);
            out += ref != names.end() ? ref->second : batch.substr(at + 1, e - at - 1);
            p = e;
        }
        out.append(batch, p, o.end - p);
    }
    return out + "}\n";
}

std::string without_sets(const std::string& batch, const std::vector<std::string>& names) {
    return rewrite_objects(batch, [&](const Object& o, std::string& out) {
        if (o.kind != "set" || !listed(names, o.name)) {
            out.append(batch, o.begin, o.end - o.begin);
        }
    });
}

std::string add_set_commands(const std::string& batch,
                             const std::map<std::string, std::string>& names) {
    std::string table;
    std::vector<Object> objects;
    size_t body = 0;
    if (!scan(batch, &table, &objects, &body)) {
        return {};
    }
    std::string out;
    for (const Object& o : objects) {
        auto it = o.kind == "set" ? names.find(o.name) : names.end();
        if (it == names.end()) {
            continue;
        }
        out += "add set inet " + table + " " + it->second + " {";
        size_t next = 0;
        for (size_t p = batch.find('\n', o.begin) + 1; p < o.end; p = next) {
            std::string_view l = line_at(batch, p, &next);
            if (l == kElementsOpen) {
                next = o.elems_close_end;
            } else if (l != "\t}\n") {
                l.remove_prefix(l.find_first_not_of('\t'));
                l.remove_suffix(1);
                out += " ";
                out += l;
                out += ";";
            }
        }
        out += " }\n";
    }
    return out;
}

std::string text_hash(std::string_view text) {
    uint64_t fnv = 0xcbf29ce484222325ull;
    for (unsigned char c : text) {
        fnv = (fnv ^ c) * 0x100000001b3ull;
    }
    uint64_t other = std::hash<std::string_view>{}(text);
    char buf[40];
    std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(fnv),
                  static_cast<unsigned long long>(other));
    return buf;
}

}  // namespace tp::config
