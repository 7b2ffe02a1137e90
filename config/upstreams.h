#pragma once
// Reading `upstreams:` and the parts of a listener's `routes:` that name upstreams and domains
// (issue 10). Credentials come from files that are read here and never printed; domain lists
// are checked as DNS names, inline or from `@file` lists.

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "config/plan.h"
#include "config/values.h"

namespace tp::config {

class UpstreamReader : public ValueReader {
  public:
    using HostPort =
        std::function<std::optional<plan::SockAddr>(const YamlNode&, const std::string&)>;
    UpstreamReader(std::string base_dir, Diags& diags, HostPort host_port)
        : ValueReader(diags), base_dir_(std::move(base_dir)), host_port_(std::move(host_port)) {}

    void read_upstreams(const YamlNode& n);
    // A route's `domains:`: "name" exact, ".name" the name and every name below it, "@file".
    void read_domains(const YamlNode& n, const std::string& path, plan::Route& r);
    // The upstream a route names, copied into the listener on first use: its index there.
    std::optional<uint32_t> use(const YamlNode& n, const std::string& path, plan::Listener& l);

  private:
    void read_upstream(const YamlNode& n, const std::string& path);
    std::optional<std::string> secret_file(const YamlNode& n, const std::string& path);
    bool add_domain(std::string_view text, plan::Route& r, std::string& why);
    std::string full_path(const std::string& file) const;

    std::string base_dir_;
    HostPort host_port_;
    std::map<std::string, plan::Upstream> upstreams_;
    std::map<std::string, std::pair<std::vector<std::string>, std::vector<std::string>>>
        domain_files_;  // read once: exact, suffixes
};

}  // namespace tp::config
