// Names of the handshake failure causes, as counters and logs print them.
#include "engine/handshake/common.h"

namespace tp::engine::hs {

const char* cause_name(Cause c) {
    switch (c) {
        case Cause::none:
            return "none";
        case Cause::closed:
            return "closed";
        case Cause::malformed:
            return "malformed";
        case Cause::socks_no_method:
            return "socks_no_method";
        case Cause::socks_auth_refused:
            return "socks_auth_refused";
        case Cause::socks_general:
            return "socks_general_failure";
        case Cause::socks_not_allowed:
            return "socks_not_allowed";
        case Cause::socks_net_unreachable:
            return "socks_net_unreachable";
        case Cause::socks_host_unreachable:
            return "socks_host_unreachable";
        case Cause::socks_refused:
            return "socks_refused";
        case Cause::socks_ttl_expired:
            return "socks_ttl_expired";
        case Cause::socks_cmd_unsupported:
            return "socks_cmd_unsupported";
        case Cause::socks_atyp_unsupported:
            return "socks_atyp_unsupported";
        case Cause::socks_unknown_reply:
            return "socks_unknown_reply";
        case Cause::http_auth_required:
            return "http_407";
        case Cause::http_forbidden:
            return "http_403";
        case Cause::http_server_error:
            return "http_5xx";
        case Cause::http_other:
            return "http_other";
        case Cause::timeout:
            return "handshake_timeout";
        case Cause::count_:
            break;
    }
    return "?";
}

}  // namespace tp::engine::hs
