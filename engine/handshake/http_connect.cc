// HTTP CONNECT client codec (see http_connect.h). The head is scanned byte by byte: the status
// line's first 16 bytes are kept for the code, the rest only advances the blank-line matcher, so
// no reply can make it buffer more than a few bytes.
#include "engine/handshake/http_connect.h"

#include <cstring>

namespace tp::engine::hs {

uint32_t base64_encode(std::string_view in, char* out, uint32_t cap) {
    static constexpr char tbl[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t need = static_cast<uint32_t>((in.size() + 2) / 3 * 4);
    if (need > cap) {
        return 0;
    }
    uint32_t n = 0;
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
        out[n++] = tbl[(v >> 18) & 63];
        out[n++] = tbl[(v >> 12) & 63];
        out[n++] = tbl[(v >> 6) & 63];
        out[n++] = tbl[v & 63];
    }
    if (i + 1 == in.size()) {
        uint32_t v = uint8_t(in[i]) << 16;
        out[n++] = tbl[(v >> 18) & 63];
        out[n++] = tbl[(v >> 12) & 63];
        out[n++] = '=';
        out[n++] = '=';
    } else if (i + 2 == in.size()) {
        uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
        out[n++] = tbl[(v >> 18) & 63];
        out[n++] = tbl[(v >> 12) & 63];
        out[n++] = tbl[(v >> 6) & 63];
        out[n++] = '=';
    }
    return n;
}

namespace {
struct Writer {
    uint8_t* p;
    uint32_t cap;
    uint32_t n = 0;
    bool ok = true;
    void put(std::string_view s) {
        if (n + s.size() > cap) {
            ok = false;
            return;
        }
        std::memcpy(p + n, s.data(), s.size());
        n += static_cast<uint32_t>(s.size());
    }
};
}  // namespace

std::span<const uint8_t> HttpConnectClient::start(std::string_view authority,
                                                  std::string_view credentials) {
    *this = HttpConnectClient{};
    Writer w{out_, max_out};
    w.put("CONNECT ");
    w.put(authority);
    w.put(" HTTP/1.1\r\nHost: ");
    w.put(authority);
    w.put("\r\n");
    if (!credentials.empty()) {
        char b64[max_out];
        uint32_t len = base64_encode(credentials, b64, sizeof b64);
        if (len == 0) {
            return {};
        }
        w.put("Proxy-Authorization: Basic ");
        w.put({b64, len});
        w.put("\r\n");
    }
    w.put("\r\n");
    if (!w.ok || authority.empty()) {
        return {};
    }
    return {out_, w.n};
}

Step HttpConnectClient::decide_status(uint32_t used) {
    // "HTTP/1.x NNN": the version's major must be 1; the code three digits.
    std::string_view l(line_, line_len_);
    if (l.size() < 12 || l.substr(0, 7) != "HTTP/1." || l[8] != ' ' || l[9] < '1' || l[9] > '5' ||
        l[10] < '0' || l[10] > '9' || l[11] < '0' || l[11] > '9' ||
        (l.size() > 12 && l[12] != ' ' && l[12] != '\r')) {
        return Step{Status::failed, used, Cause::malformed};
    }
    code_ = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
    if (code_ / 100 == 2) {
        return Step{Status::need_more, used, Cause::none};
    }
    Cause c = Cause::http_other;
    if (code_ == 407) {
        c = Cause::http_auth_required;
    } else if (code_ == 403) {
        c = Cause::http_forbidden;
    } else if (code_ / 100 == 5) {
        c = Cause::http_server_error;
    }
    return Step{Status::failed, used, c};
}

Step HttpConnectClient::feed(std::span<const uint8_t> in) {
    uint32_t used = 0;
    while (used < in.size()) {
        if (finished_) {
            return Step{Status::done, used, Cause::none};
        }
        if (seen_ >= max_head) {
            return Step{Status::failed, used, Cause::malformed};
        }
        uint8_t c = in[used++];
        ++seen_;
        if (!status_done_) {
            if (c == '\n') {
                status_done_ = true;
                Step s = decide_status(used);
                if (s.status == Status::failed) {
                    return s;
                }
                crlf_ = 1;  // at the start of a line
                continue;
            }
            if (line_len_ < sizeof line_) {
                line_[line_len_++] = static_cast<char>(c);
            }
            continue;
        }
        // Header lines: an empty one ("\r\n" or "\n") ends the head. crlf_ is 1 at a line
        // start, 2 after a CR there, 0 inside a line. Content-Length and Transfer-Encoding in
        // a 2xx reply to CONNECT are ignored (RFC 9110): nothing follows the head but the
        // tunnel.
        if (c == '\n') {
            if (crlf_ != 0) {
                finished_ = true;
                return Step{Status::done, used, Cause::none};
            }
            crlf_ = 1;
        } else if (c == '\r' && crlf_ == 1) {
            crlf_ = 2;
        } else {
            crlf_ = 0;
        }
    }
    if (finished_) {
        return Step{Status::done, used, Cause::none};
    }
    return Step{Status::need_more, used, Cause::none};
}

}  // namespace tp::engine::hs
