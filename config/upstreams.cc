// `upstreams:` and route domains (see upstreams.h).
#include "config/upstreams.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "config/yaml_tree.h"

namespace tp::config {

std::string UpstreamReader::full_path(const std::string& file) const {
    return file[0] == '/' || base_dir_.empty() ? file : base_dir_ + "/" + file;
}

void UpstreamReader::read_upstreams(const YamlNode& n) {
    if (!n.is_sequence()) {
        err(n, "upstreams", std::string("expected a list of upstreams, got ") + kind_name(n));
        return;
    }
    for (size_t i = 0; i < n.items.size() && !d_.full(); ++i) {
        read_upstream(*n.items[i], index("upstreams", i));
    }
}

// A secret (password, credentials) from a file: first line, without its line end. Errors name
// the file and the system's reason, never its content.
std::optional<std::string> UpstreamReader::secret_file(const YamlNode& n, const std::string& path) {
    auto file = string(n, path);
    if (!file) {
        return std::nullopt;
    }
    std::string full = full_path(*file);
    struct stat st {};
    if (::stat(full.c_str(), &st) != 0) {
        err(n, path, "cannot read " + full + ": " + std::strerror(errno));
        return std::nullopt;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > 4096) {
        err(n, path, full + " is not a regular file of at most 4 KiB");
        return std::nullopt;
    }
    std::ifstream in(full, std::ios::binary);
    std::string line;
    if (!in || !std::getline(in, line)) {
        err(n, path, "cannot read " + full + (in ? ": it is empty" : ""));
        return std::nullopt;
    }
    if (!line.empty() && line.back() == '\r') {
        line.pop_back();
    }
    if (line.empty()) {
        err(n, path, full + ": the first line is empty");
        return std::nullopt;
    }
    return line;
}

void UpstreamReader::read_upstream(const YamlNode& n, const std::string& path) {
    if (!n.is_map()) {
        err(n, path, std::string("expected an upstream (a map), got ") + kind_name(n));
        return;
    }
    plan::Upstream u;
    const YamlNode* t = n.find("type");
    std::string type = "direct";
    if (t) {
        type = choice(*t, join(path, "type"), {"direct", "socks5", "http", "reject"}).value_or("");
        if (type.empty()) {
            return;
        }
    }
    bool ok = false;
    if (type == "direct") {
        u.kind = plan::UpstreamKind::direct;
        ok = check_map(n, path, {"name", "type", "to", "source", "proxy_protocol"});
    } else if (type == "socks5") {
        u.kind = plan::UpstreamKind::socks5;
        ok = check_map(n, path,
                       {"name", "type", "address", "username", "password_file", "udp", "pipeline",
                        "connect_by"});
    } else if (type == "http") {
        u.kind = plan::UpstreamKind::http;
        ok = check_map(n, path, {"name", "type", "address", "credentials_file", "connect_by"});
    } else {
        u.kind = plan::UpstreamKind::reject;
        ok = check_map(n, path, {"name", "type"});
    }
    if (!ok) {
        return;
    }
    const YamlNode* nm = n.find("name");
    if (!nm) {
        err(n, path, "an upstream needs a name");
        return;
    }
    u.name = name(*nm, join(path, "name"), 64).value_or("");
    if (u.name.empty()) {
        return;
    }
    if (upstreams_.count(u.name) > 0) {
        err(*nm, join(path, "name"), "upstream \"" + u.name + "\" is defined twice");
        return;
    }
    if (const YamlNode* v = n.find("to")) {
        if (v->is_scalar() && v->value == "original") {
            u.target = plan::UpstreamTarget::original;
        } else if (auto a = host_port_(*v, join(path, "to"))) {
            u.target = plan::UpstreamTarget::fixed;
            u.address = *a;
        }
    }
    if (const YamlNode* v = n.find("source")) {
        if (auto s = choice(*v, join(path, "source"), {"proxy", "client", "client-port"})) {
            u.source = *s == "proxy"    ? plan::SourceMode::proxy
                       : *s == "client" ? plan::SourceMode::client
                                        : plan::SourceMode::client_port;
        }
    }
    if (const YamlNode* v = n.find("proxy_protocol")) {
        if (auto s = choice(*v, join(path, "proxy_protocol"), {"v1", "v2"})) {
            u.proxy_protocol = *s == "v1" ? plan::ProxyProtocol::v1 : plan::ProxyProtocol::v2;
        }
    }
    if (u.kind == plan::UpstreamKind::socks5 || u.kind == plan::UpstreamKind::http) {
        if (const YamlNode* v = n.find("address")) {
            if (auto a = host_port_(*v, join(path, "address"))) {
                u.address = *a;
            }
        } else {
            err(n, path, "a " + type + " upstream needs an address (HOST:PORT)");
        }
        if (const YamlNode* v = n.find("connect_by")) {
            u.by_domain =
                choice(*v, join(path, "connect_by"), {"address", "domain"}).value_or("") ==
                "domain";
        }
    }
    if (const YamlNode* v = n.find("username")) {
        u.username = string(*v, join(path, "username")).value_or("");
        if (u.username.size() > 255) {
            err(*v, join(path, "username"), "at most 255 bytes (RFC 1929)");
        }
        if (!n.find("password_file")) {
            err(n, path, "a username needs a password_file");
        }
    }
    if (const YamlNode* v = n.find("password_file")) {
        if (!n.find("username")) {
            err(*v, join(path, "password_file"), "a password_file needs a username");
        } else if (auto p = secret_file(*v, join(path, "password_file"))) {
            if (p->size() > 255) {
                err(*v, join(path, "password_file"), "the password is longer than 255 bytes");
            }
            u.password = std::move(*p);
        }
    }
    if (const YamlNode* v = n.find("credentials_file")) {
        if (auto p = secret_file(*v, join(path, "credentials_file"))) {
            if (p->find(':') == std::string::npos) {
                err(*v, join(path, "credentials_file"),
                    "the file's first line must be USER:PASSWORD");
            }
            u.credentials = std::move(*p);
        }
    }
    if (const YamlNode* v = n.find("udp")) {
        u.udp = boolean(*v, join(path, "udp")).value_or(false);
    }
    if (const YamlNode* v = n.find("pipeline")) {
        u.pipeline = boolean(*v, join(path, "pipeline")).value_or(false);
    }
    upstreams_.emplace(u.name, std::move(u));
}

std::optional<uint32_t> UpstreamReader::use(const YamlNode& n, const std::string& path,
                                            plan::Listener& l) {
    auto nm = string(n, path);
    if (!nm) {
        return std::nullopt;
    }
    auto it = upstreams_.find(*nm);
    if (it == upstreams_.end()) {
        std::string known;
        for (const auto& [k, v] : upstreams_) {
            known += (known.empty() ? "" : ", ") + k;
        }
        err(n, path,
            "unknown upstream \"" + *nm + "\"" +
                (known.empty() ? " (no upstreams: are defined)" : " (defined: " + known + ")"));
        return std::nullopt;
    }
    if (it->second.udp && l.protocol == plan::Protocol::tcp) {
        // Its UDP half would have nothing to carry. (Routes are read after the listener's own
        // keys, so `protocol:` is known here once listeners can set it.)
        err(n, path,
            "upstream \"" + *nm + "\" has udp: true, but listener \"" + l.name + "\" is TCP-only");
        return std::nullopt;
    }
    if (l.protocol != plan::Protocol::tcp) {
        // A route of a listener that serves UDP also routes its flows: an upstream that cannot
        // carry them would otherwise let them leak out directly.
        const plan::Upstream& u = it->second;
        if (u.kind == plan::UpstreamKind::socks5 && !u.udp) {
            err(n, path,
                "upstream \"" + *nm + "\" is socks5 without udp: true, but listener \"" + l.name +
                    "\" serves udp; set udp: true on the upstream (UDP ASSOCIATE) or "
                    "protocol: tcp on the listener");
            return std::nullopt;
        }
        if (u.kind == plan::UpstreamKind::http) {
            err(n, path,
                "upstream \"" + *nm + "\" is http (CONNECT carries no UDP), but listener \"" +
                    l.name + "\" serves udp; route UDP through a socks5 upstream with udp: true");
            return std::nullopt;
        }
        if (l.protocol == plan::Protocol::udp && u.kind == plan::UpstreamKind::direct &&
            (u.target != plan::UpstreamTarget::original || u.source != plan::SourceMode::proxy ||
             u.proxy_protocol != plan::ProxyProtocol::none)) {
            // UDP flows of a direct route take the listener's own path (docs/config.md).
            err(n, path,
                "upstream \"" + *nm +
                    "\" sets to, source or proxy_protocol, which UDP flows do "
                    "not use, and listener \"" +
                    l.name +
                    "\" serves udp only; set them in "
                    "the listener's upstream: instead");
            return std::nullopt;
        }
    }
    for (size_t i = 0; i < l.upstreams.size(); ++i) {
        if (l.upstreams[i].name == *nm) {
            return static_cast<uint32_t>(i);
        }
    }
    l.upstreams.push_back(it->second);
    return static_cast<uint32_t>(l.upstreams.size() - 1);
}

// A DNS name: labels of letters, digits, '-' and '_', 1-63 bytes each, 253 in all; stored in
// lower case, as the sniffers report names.
bool UpstreamReader::add_domain(std::string_view text, plan::Route& r, std::string& why) {
    bool suffix = !text.empty() && text[0] == '.';
    std::string_view name = suffix ? text.substr(1) : text;
    if (name.empty() || name.size() > 253) {
        why = "\"" + std::string(text) + "\" is not a domain name (1-253 bytes)";
        return false;
    }
    std::string lower;
    size_t label = 0;
    for (char c : name) {
        if (c == '.') {
            if (label == 0) {
                why = "\"" + std::string(text) + "\" has an empty label";
                return false;
            }
            label = 0;
        } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') {
            if (++label > 63) {
                why = "\"" + std::string(text) + "\" has a label longer than 63 bytes";
                return false;
            }
        } else {
            why = "\"" + std::string(text) + "\" is not a domain name (bad character '" +
                  std::string(1, c) + "'; write \".example.com\" for a suffix)";
            return false;
        }
        lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    if (label == 0) {
        why = "\"" + std::string(text) + "\" ends with a dot";
        return false;
    }
    (suffix ? r.suffixes : r.domains).push_back(std::move(lower));
    return true;
}

void UpstreamReader::read_domains(const YamlNode& n, const std::string& path, plan::Route& r) {
    auto items = list(n, path);
    if (n.is_sequence() && n.items.empty()) {
        err(n, path, "empty list; leave the key out to match any name");
    }
    for (size_t i = 0; i < items.size() && !d_.full(); ++i) {
        const YamlNode& item = *items[i];
        std::string p = item_path(n, path, i);
        if (!item.is_scalar()) {
            err(item, p, std::string("expected a domain or \"@file\", got ") + kind_name(item));
            continue;
        }
        std::string why;
        if (item.value.empty() || item.value[0] != '@') {
            if (!add_domain(item.value, r, why)) {
                err(item, p, why);
            }
            continue;
        }
        std::string file = item.value.substr(1);
        if (file.empty()) {
            err(item, p, "\"@\" needs a file name: \"@domains.txt\"");
            continue;
        }
        std::string full = full_path(file);
        auto cached = domain_files_.find(full);
        if (cached == domain_files_.end()) {
            plan::Route tmp;
            struct stat st {};
            if (::stat(full.c_str(), &st) != 0) {
                err(item, p, "cannot read domain list " + full + ": " + std::strerror(errno));
                continue;
            }
            if (!S_ISREG(st.st_mode)) {
                err(item, p, "domain list " + full + " is not a regular file");
                continue;
            }
            if (static_cast<uint64_t>(st.st_size) > kMaxFileBytes) {
                err(item, p, "domain list " + full + " is larger than 16 MiB");
                continue;
            }
            std::ifstream in(full, std::ios::binary);
            std::string line;
            int line_no = 0;
            while (std::getline(in, line) && !d_.full()) {
                ++line_no;
                auto hash = line.find('#');
                std::string_view body(line.data(), hash == std::string::npos ? line.size() : hash);
                size_t b = body.find_first_not_of(" \t\r");
                if (b == std::string_view::npos) {
                    continue;
                }
                size_t e = body.find_last_not_of(" \t\r");
                if (!add_domain(body.substr(b, e - b + 1), tmp, why)) {
                    d_.error_in(full, {line_no, static_cast<int>(b) + 1}, p, why);
                }
            }
            cached = domain_files_.emplace(full, std::make_pair(tmp.domains, tmp.suffixes)).first;
        }
        r.domains.insert(r.domains.end(), cached->second.first.begin(), cached->second.first.end());
        r.suffixes.insert(r.suffixes.end(), cached->second.second.begin(),
                          cached->second.second.end());
    }
}

}  // namespace tp::config
