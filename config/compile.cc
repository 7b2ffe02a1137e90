// load_config_file/text: raw checks -> YAML tree -> validated model -> plan + kernel set-up.

#include <algorithm>
#include <cstring>

#include "config/file_text.h"
#include "config/load.h"
#include "config/nft_gen.h"
#include "config/route_gen.h"
#include "config/schema.h"
#include "config/yaml_tree.h"

namespace tp::config {

namespace {

std::string dir_of(const std::string& path) {
    auto slash = path.rfind('/');
    if (slash == std::string::npos) {
        return "";
    }
    return slash == 0 ? "/" : path.substr(0, slash);
}

plan::Plan to_plan(const Model& m) {
    plan::Plan p;
    p.workers = m.workers;
    p.bypass_mark = m.routing.bypass_mark;
    p.udp_reply_mark = m.routing.reply_mark;
    p.drain_timeout_ms = m.drain_timeout_ms;
    p.memory_limit = m.memory_limit;
    p.log_connections = m.log_connections;
    p.listeners = m.listeners;
    // How each listener finds the original destination follows from the rules that feed it.
    std::vector<int> seen(m.listeners.size(), 0);  // bit 1 = tproxy, bit 2 = redirect
    std::vector<int> tcp_rules(m.listeners.size(), 0);
    for (const Rule& r : m.rules) {
        if (r.listener >= 0) {
            seen[r.listener] |= r.action == Action::tproxy ? 1 : 2;
            if ((r.protocols & kProtoTcp) != 0 && ++tcp_rules[r.listener] == 1) {
                p.listeners[r.listener].rule = r.name;
            }
        }
    }
    for (size_t i = 0; i < p.listeners.size(); ++i) {
        if (tcp_rules[i] != 1) {
            p.listeners[i].rule.clear();  // several rules: which one matched is not known
        }
    }
    for (size_t i = 0; i < p.listeners.size(); ++i) {
        p.listeners[i].orig_dst = seen[i] == 1   ? plan::OrigDst::local_address
                                  : seen[i] == 2 ? plan::OrigDst::conntrack
                                                 : plan::OrigDst::automatic;
    }
    return p;
}

LoadResult load(const std::string& text, const std::string& name, const std::string& base_dir) {
    Diags diags(name);
    if (!check_text(text, name, diags)) {
        return diags.take();
    }
    auto root = parse_yaml(text, diags);
    if (!root) {
        return diags.take();
    }
    auto model = read_model(*root, base_dir, diags);
    if (!model) {
        return diags.take();
    }
    LoadedConfig out;
    out.plan = to_plan(*model);
    out.kernel.nft_table = model->nft_table;
    out.kernel.nft_batch = generate_nft(*model);
    generate_routes(*model, out.kernel);
    for (const Rule& r : model->rules) {
        if (!(r.protocols & kProtoUdp)) {
            continue;
        }
        UdpCatch c;
        c.bypass = r.action == Action::bypass;
        c.sources = r.sources;
        c.destinations = r.destinations;
        for (const PortRange& p : r.ports) {
            c.ports.emplace_back(p.low, p.high);
        }
        out.kernel.udp_catches.push_back(std::move(c));
        if (r.action == Action::tproxy) {
            out.tproxy_any_interface = out.tproxy_any_interface || r.interfaces.empty();
            out.tproxy_interfaces.insert(out.tproxy_interfaces.end(), r.interfaces.begin(),
                                         r.interfaces.end());
        }
    }
    for (const Rule& r : model->rules) {
        if (r.action == Action::tproxy && !(r.protocols & kProtoUdp)) {
            out.tproxy_any_interface = out.tproxy_any_interface || r.interfaces.empty();
            out.tproxy_interfaces.insert(out.tproxy_interfaces.end(), r.interfaces.begin(),
                                         r.interfaces.end());
        }
    }
    out.capture_local = model->capture_local;
    out.observe = model->observe;
    out.user = model->user;
    out.group = model->group;
    for (const Rule& r : model->rules) {
        for (const std::string& i : r.interfaces) {
            if (std::find(out.interfaces.begin(), out.interfaces.end(), i) ==
                out.interfaces.end()) {
                out.interfaces.push_back(i);
            }
        }
        if (r.action == Action::bypass) {
            continue;
        }
        out.uses_tproxy = out.uses_tproxy || r.action == Action::tproxy;
        bool only_lo = !r.interfaces.empty();
        for (const std::string& i : r.interfaces) {
            only_lo = only_lo && i == "lo";
        }
        out.intercepts_forwarded = out.intercepts_forwarded || !only_lo;
    }
    return out;
}

}  // namespace

LoadResult load_config_text(const std::string& text, const std::string& name) {
    return load(text, name, dir_of(name));
}

LoadResult load_config_file(const std::string& path) {
    std::string text;
    switch (FileRead r = read_file_text(path, text); r.status) {
        case FileRead::Status::ok:
            break;
        case FileRead::Status::sys_error:
            return std::vector<Diagnostic>{
                {path, 0, 0, "", std::string("cannot read: ") + std::strerror(r.error)}};
        case FileRead::Status::not_regular:
            return std::vector<Diagnostic>{{path, 0, 0, "", "not a regular file"}};
        case FileRead::Status::too_large:
            return std::vector<Diagnostic>{{path, 0, 0, "", "file is larger than 16 MiB"}};
    }
    return load(text, path, dir_of(path));
}

}  // namespace tp::config
