// Building YamlNode trees from yaml-cpp events, and the raw-text checks done before parsing.
// yaml-cpp exceptions are caught here and nowhere else.

#include "config/yaml_tree.h"

#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <map>
#include <sstream>

namespace tp::config {

const YamlNode* YamlNode::find(std::string_view key) const {
    for (const auto& [k, v] : entries) {
        if (k->is_scalar() && k->value == key) {
            return v.get();
        }
    }
    return nullptr;
}

namespace {

Pos pos_of(const YAML::Mark& m) {
    if (m.is_null()) {
        return {};
    }
    return {m.line + 1, m.column + 1};
}

// Length of the UTF-8 sequence at `s[i]`, or 0 when it is malformed.
size_t utf8_length(std::string_view s, size_t i) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (i + n > s.size()) {
        return 0;
    }
    for (size_t k = 1; k < n; ++k) {
        auto cc = static_cast<unsigned char>(s[i + k]);
        if ((cc & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (cc & 0x3f);
    }
    // overlong forms, surrogates, beyond U+10FFFF
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return n;
}

class TreeBuilder : public YAML::EventHandler {
  public:
    explicit TreeBuilder(Diags& diags) : diags_(diags) {}

    std::shared_ptr<YamlNode> root;
    int documents = 0;
    bool failed = false;

    void OnDocumentStart(const YAML::Mark& mark) override {
        if (++documents > 1) {
            fail(pos_of(mark), "only one YAML document is allowed (found a second `---`)");
        }
    }
    void OnDocumentEnd() override {}

    void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
        auto n = std::make_shared<YamlNode>();
        n->pos = pos_of(mark);
        add(std::move(n), anchor);
    }
    void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
        auto it = anchors_.find(anchor);
        if (it == anchors_.end()) {
            // An alias to a node that is still open would make a cycle.
            fail(pos_of(mark), "an alias may not refer to a node that contains it");
            auto n = std::make_shared<YamlNode>();
            n->pos = pos_of(mark);
            add(n, 0);
            return;
        }
        add(it->second, 0);
    }
    void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  const std::string& value) override {
        check_tag(mark, tag);
        auto n = std::make_shared<YamlNode>();
        n->kind = YamlNode::Kind::scalar;
        n->pos = pos_of(mark);
        n->quoted = tag == "!";
        n->value = value;
        add(n, anchor);
    }
    void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                         YAML::EmitterStyle::value) override {
        open(mark, tag, anchor, YamlNode::Kind::sequence);
    }
    void OnSequenceEnd() override { close(); }
    void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                    YAML::EmitterStyle::value) override {
        open(mark, tag, anchor, YamlNode::Kind::map);
    }
    void OnMapEnd() override { close(); }

  private:
    struct Open {
        std::shared_ptr<YamlNode> node;
        YAML::anchor_t anchor;
        std::shared_ptr<const YamlNode> pending_key;
    };

    void fail(Pos pos, std::string message) {
        failed = true;
        diags_.error(pos, "", std::move(message));
    }
    void check_tag(const YAML::Mark& mark, const std::string& tag) {
        if (tag != "?" && tag != "!" && tag != "") {
            fail(pos_of(mark), "YAML tags (" + tag + ") are not supported");
        }
    }
    void open(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
              YamlNode::Kind kind) {
        check_tag(mark, tag);
        auto n = std::make_shared<YamlNode>();
        n->kind = kind;
        n->pos = pos_of(mark);
        stack_.push_back({n, anchor, nullptr});
    }
    void close() {
        Open top = std::move(stack_.back());
        stack_.pop_back();
        uint64_t w = 1;
        for (const auto& item : top.node->items) {
            w += item->weight;
        }
        for (const auto& [k, v] : top.node->entries) {
            w += k->weight + v->weight;
        }
        top.node->weight = std::min<uint64_t>(w, kMaxExpandedNodes + 1);
        if (top.node->weight > kMaxExpandedNodes && !expanded_too_far_) {
            expanded_too_far_ = true;
            fail(top.node->pos,
                 "with its aliases expanded this part of the document has more "
                 "than " +
                     std::to_string(kMaxExpandedNodes) + " nodes (an alias bomb?)");
        }
        add(top.node, top.anchor);
    }
    void add(std::shared_ptr<const YamlNode> n, YAML::anchor_t anchor) {
        if (anchor != 0) {
            anchors_[anchor] = n;
        }
        if (stack_.empty()) {
            if (!root) {
                root = std::const_pointer_cast<YamlNode>(n);
            }
            return;
        }
        Open& top = stack_.back();
        if (top.node->kind == YamlNode::Kind::sequence) {
            top.node->items.push_back(std::move(n));
        } else if (!top.pending_key) {
            top.pending_key = std::move(n);
        } else {
            // An empty value (`port:`) has no text of its own: point at its key instead of
            // at whatever follows.
            if (n->is_null() && n.use_count() == 1) {
                std::const_pointer_cast<YamlNode>(n)->pos = top.pending_key->pos;
            }
            top.node->entries.emplace_back(std::move(top.pending_key), std::move(n));
            top.pending_key = nullptr;
        }
    }

    Diags& diags_;
    bool expanded_too_far_ = false;
    std::vector<Open> stack_;
    std::map<YAML::anchor_t, std::shared_ptr<const YamlNode>> anchors_;
};

}  // namespace

bool check_text(std::string_view text, const std::string& file, Diags& diags) {
    if (text.size() > kMaxFileBytes) {
        diags.error_in(file, {}, "",
                       "file is larger than " + std::to_string(kMaxFileBytes >> 20) + " MiB");
        return false;
    }
    if (text.substr(0, 3) == "\xef\xbb\xbf") {
        diags.error_in(file, {1, 1}, "", "byte order mark (BOM) at the start; save as plain UTF-8");
        return false;
    }
    int line = 1;
    int column = 1;
    for (size_t i = 0; i < text.size();) {
        char c = text[i];
        if (c == '\n') {
            ++line;
            column = 1;
            ++i;
            continue;
        }
        if (c == '\t') {
            diags.error_in(file, {line, column}, "", "tab character; use spaces");
            return false;
        }
        auto uc = static_cast<unsigned char>(c);
        if ((uc < 0x20 && c != '\r') || uc == 0x7f) {
            diags.error_in(file, {line, column}, "",
                           "control character " + std::to_string(uc) + " is not allowed");
            return false;
        }
        size_t n = utf8_length(text, i);
        if (n == 0) {
            diags.error_in(file, {line, column}, "", "invalid UTF-8");
            return false;
        }
        i += n;
        ++column;
    }
    return true;
}

std::shared_ptr<const YamlNode> parse_yaml(const std::string& text, Diags& diags) {
    TreeBuilder builder(diags);
    try {
        std::istringstream in(text);
        YAML::Parser parser(in);
        while (parser.HandleNextDocument(builder)) {
            if (builder.failed) {
                break;
            }
        }
    } catch (const YAML::DeepRecursion& e) {
        // yaml-cpp's own message for this one is "bad file".
        diags.error(pos_of(e.mark), "", "YAML syntax error: nesting is too deep");
        return nullptr;
    } catch (const YAML::Exception& e) {
        diags.error(pos_of(e.mark), "", "YAML syntax error: " + e.msg);
        return nullptr;
    } catch (const std::exception& e) {
        diags.error({}, "", std::string("YAML parser failed: ") + e.what());
        return nullptr;
    }
    if (builder.failed) {
        return nullptr;
    }
    if (!builder.root) {
        return std::make_shared<YamlNode>();
    }
    return builder.root;
}

}  // namespace tp::config
