// TLS SNI and HTTP Host sniffers (see sniff.h). The TLS reader walks the ClientHello across
// record boundaries without copying it (a large ClientHello may span records); names are
// checked as DNS names and lower-cased so routes match them byte for byte.
#include "engine/handshake/sniff.h"

#include <strings.h>

#include <cstring>

namespace tp::engine::hs {

namespace {

// Accepts a host name (letters, digits, '-', '_', '.'), lower-cases it into r.
bool set_name(SniffResult& r, const uint8_t* p, size_t n) {
    while (n > 0 && p[n - 1] == '.') {
        --n;  // "example.com." names the same host
    }
    if (n == 0 || n > 253) {
        return false;
    }
    for (size_t i = 0; i < n; ++i) {
        char c = static_cast<char>(p[i]);
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c - 'A' + 'a');
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                     c == '.')) {
            return false;
        }
        r.name[i] = c;
    }
    r.name[n] = '\0';
    r.len = static_cast<uint8_t>(n);
    r.status = SniffStatus::found;
    return true;
}

SniffResult none() {
    SniffResult r;
    r.status = SniffStatus::none;
    return r;
}

// Reads the handshake bytes carried by consecutive TLS handshake records.
class HsReader {
  public:
    explicit HsReader(std::span<const uint8_t> d) : d_(d) {}
    enum Res { ok, more, bad };

    Res byte(uint8_t& b) {
        if (left_ == 0) {
            if (pos_ + 5 > d_.size()) {
                return more;
            }
            if (d_[pos_] != 0x16 || d_[pos_ + 1] != 0x03) {
                return bad;  // not a handshake record
            }
            left_ = (uint32_t(d_[pos_ + 3]) << 8) | d_[pos_ + 4];
            if (left_ == 0 || left_ > 16384 + 2048) {
                return bad;
            }
            pos_ += 5;
        }
        if (pos_ >= d_.size()) {
            return more;
        }
        b = d_[pos_++];
        --left_;
        return ok;
    }
    Res get(uint32_t n, uint32_t& v) {  // big-endian integer of n bytes
        v = 0;
        for (uint32_t i = 0; i < n; ++i) {
            uint8_t b;
            Res r = byte(b);
            if (r != ok) {
                return r;
            }
            v = (v << 8) | b;
        }
        return ok;
    }
    Res skip(uint32_t n) {
        uint8_t b;
        for (uint32_t i = 0; i < n; ++i) {
            Res r = byte(b);
            if (r != ok) {
                return r;
            }
        }
        return ok;
    }
    Res read(uint32_t n, uint8_t* out) {
        for (uint32_t i = 0; i < n; ++i) {
            Res r = byte(out[i]);
            if (r != ok) {
                return r;
            }
        }
        return ok;
    }

  private:
    std::span<const uint8_t> d_;
    size_t pos_ = 0;
    uint32_t left_ = 0;  // bytes left in the current record
};

#define TP_SNIFF_TRY(expr)                                        \
    do {                                                          \
        HsReader::Res r_ = (expr);                                \
        if (r_ != HsReader::ok) {                                 \
            return r_ == HsReader::more ? SniffResult{} : none(); \
        }                                                         \
    } while (0)

}  // namespace

SniffResult sniff_tls_sni(std::span<const uint8_t> data) {
    // Record header checks first, so other protocols are told apart from the first bytes.
    if (!data.empty() && data[0] != 0x16) {
        return none();
    }
    if (data.size() >= 2 && data[1] != 0x03) {
        return none();
    }
    HsReader rd(data);
    uint32_t type, len, v;
    TP_SNIFF_TRY(rd.get(1, type));
    if (type != 0x01) {
        return none();  // not a ClientHello
    }
    TP_SNIFF_TRY(rd.get(3, len));
    TP_SNIFF_TRY(rd.get(2, v));  // legacy_version
    TP_SNIFF_TRY(rd.skip(32));   // random
    uint32_t used = 2 + 32;
    TP_SNIFF_TRY(rd.get(1, v));  // session id
    TP_SNIFF_TRY(rd.skip(v));
    used += 1 + v;
    TP_SNIFF_TRY(rd.get(2, v));  // cipher suites
    TP_SNIFF_TRY(rd.skip(v));
    used += 2 + v;
    TP_SNIFF_TRY(rd.get(1, v));  // compression methods
    TP_SNIFF_TRY(rd.skip(v));
    used += 1 + v;
    if (used >= len) {
        return none();  // no extensions
    }
    uint32_t ext_total;
    TP_SNIFF_TRY(rd.get(2, ext_total));
    if (used + 2 + ext_total > len) {
        return none();
    }
    while (ext_total >= 4) {
        uint32_t etype, elen;
        TP_SNIFF_TRY(rd.get(2, etype));
        TP_SNIFF_TRY(rd.get(2, elen));
        ext_total -= 4;
        if (elen > ext_total) {
            return none();
        }
        ext_total -= elen;
        if (etype != 0x0000) {
            TP_SNIFF_TRY(rd.skip(elen));
            continue;
        }
        // server_name: list length, then entries of type(1) length(2) name.
        uint32_t list;
        TP_SNIFF_TRY(rd.get(2, list));
        if (list + 2 > elen) {
            return none();
        }
        while (list >= 3) {
            uint32_t ntype, nlen;
            TP_SNIFF_TRY(rd.get(1, ntype));
            TP_SNIFF_TRY(rd.get(2, nlen));
            list -= 3;
            if (nlen > list) {
                return none();
            }
            list -= nlen;
            if (ntype == 0 && nlen <= 255) {
                uint8_t buf[255];
                TP_SNIFF_TRY(rd.read(nlen, buf));
                SniffResult r;
                return set_name(r, buf, nlen) ? r : none();
            }
            TP_SNIFF_TRY(rd.skip(nlen));
        }
        return none();
    }
    return none();
}

#undef TP_SNIFF_TRY

SniffResult sniff_http_host(std::span<const uint8_t> data) {
    // Request line: METHOD (upper-case token, <= 16) SP target SP "HTTP/1." digit.
    size_t i = 0;
    while (i < data.size() && data[i] >= 'A' && data[i] <= 'Z') {
        if (++i > 16) {
            return none();
        }
    }
    if (i == data.size()) {
        return SniffResult{};
    }
    if (i == 0 || data[i] != ' ') {
        return none();
    }
    // The rest is scanned line by line; a line is only judged once complete.
    size_t line = 0;  // start of the current line
    bool first = true;
    for (size_t p = 0; p < data.size(); ++p) {
        if (data[p] != '\n') {
            continue;
        }
        size_t end = p;  // exclusive, without CR
        if (end > line && data[end - 1] == '\r') {
            --end;
        }
        std::string_view l(reinterpret_cast<const char*>(data.data()) + line, end - line);
        line = p + 1;
        if (first) {
            first = false;
            if (l.size() < 8 || l.substr(l.size() - 8, 7) != "HTTP/1.") {
                return none();
            }
            continue;
        }
        if (l.empty()) {
            return none();  // end of the head and no Host
        }
        if (l.size() > 5 && strncasecmp(l.data(), "host:", 5) == 0) {
            std::string_view v = l.substr(5);
            while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) {
                v.remove_prefix(1);
            }
            while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) {
                v.remove_suffix(1);
            }
            if (!v.empty() && v.front() == '[') {
                return none();  // an IPv6 literal names no domain
            }
            size_t colon = v.rfind(':');
            if (colon != std::string_view::npos) {
                v = v.substr(0, colon);
            }
            SniffResult r;
            return set_name(r, reinterpret_cast<const uint8_t*>(v.data()), v.size()) ? r : none();
        }
    }
    return SniffResult{};
}

SniffResult sniff_name(std::span<const uint8_t> data) {
    if (data.empty()) {
        return SniffResult{};
    }
    if (data[0] == 0x16) {
        return sniff_tls_sni(data);
    }
    return sniff_http_host(data);
}

}  // namespace tp::engine::hs
