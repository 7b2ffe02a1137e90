// Close records (every close cause, logfmt and JSON), the SPSC ring's drop counting, and the
// log line prefix with and without the journal.
#include "engine/conn_log.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

#include "engine/log.h"

namespace tp::engine {
namespace {

CloseRecord sample(CloseReason reason) {
    CloseRecord r;
    r.start_unix_ms = 1'700'000'000'123;  // 2023-11-14T22:13:20.123Z
    r.duration_ms = 2'500;
    auto* c = reinterpret_cast<sockaddr_in*>(&r.client);
    c->sin_family = AF_INET;
    c->sin_port = htons(40000);
    inet_pton(AF_INET, "192.0.2.2", &c->sin_addr);
    r.original.sin6_family = AF_INET6;
    r.original.sin6_port = htons(443);
    inet_pton(AF_INET6, "2001:db8::2", &r.original.sin6_addr);
    auto* u = reinterpret_cast<sockaddr_in*>(&r.upstream);
    u->sin_family = AF_INET;
    u->sin_port = htons(80);
    inet_pton(AF_INET, "198.51.100.2", &u->sin_addr);
    std::strcpy(r.listener, "web");
    r.bytes_up = 120;
    r.bytes_down = 34'567;
    r.reason = reason;
    r.worker = 1;
    return r;
}

TEST(CloseRecord, LogfmtForEveryCause) {
    for (size_t i = 0; i < kCloseReasons; ++i) {
        auto reason = static_cast<CloseReason>(i);
        EXPECT_EQ(format_close_record(sample(reason), false),
                  std::string("event=close start=2023-11-14T22:13:20.123Z duration=2.500s "
                              "client=192.0.2.2:40000 original=[2001:db8::2]:443 "
                              "upstream=198.51.100.2:80 listener=web bytes_up=120 "
                              "bytes_down=34567 cause=") +
                      close_reason_name(reason) + " worker=1");
    }
}

TEST(CloseRecord, JsonForEveryCause) {
    for (size_t i = 0; i < kCloseReasons; ++i) {
        auto reason = static_cast<CloseReason>(i);
        EXPECT_EQ(format_close_record(sample(reason), true),
                  std::string("{\"event\":\"close\",\"start\":\"2023-11-14T22:13:20.123Z\","
                              "\"duration_s\":2.500,\"client\":\"192.0.2.2:40000\","
                              "\"original\":\"[2001:db8::2]:443\",\"upstream\":\"198.51.100.2:80\","
                              "\"listener\":\"web\",\"bytes_up\":120,\"bytes_down\":34567,"
                              "\"cause\":\"") +
                      close_reason_name(reason) + "\",\"worker\":1}");
    }
}

TEST(CloseRecord, UnknownAddressesAndOddNames) {
    CloseRecord r = sample(CloseReason::loop_refused);
    std::memset(&r.upstream, 0, sizeof r.upstream);
    std::strcpy(r.listener, "a b\"c");
    std::string s = format_close_record(r, false);
    EXPECT_NE(s.find(" upstream=- "), std::string::npos) << s;
    EXPECT_NE(s.find(" listener=a_b_c "), std::string::npos) << s;
}

TEST(CloseRecord, RuleWhenKnown) {
    CloseRecord r = sample(CloseReason::client_eof);
    std::strcpy(r.rule, "lan-web");
    EXPECT_EQ(format_close_record(r, false),
              "event=close start=2023-11-14T22:13:20.123Z duration=2.500s "
              "client=192.0.2.2:40000 original=[2001:db8::2]:443 upstream=198.51.100.2:80 "
              "listener=web rule=lan-web bytes_up=120 bytes_down=34567 cause=client_eof "
              "worker=1");
    std::string j = format_close_record(r, true);
    EXPECT_NE(j.find("\"listener\":\"web\",\"rule\":\"lan-web\",\"bytes_up\":120"),
              std::string::npos)
        << j;
    r.rule[0] = '\0';  // not known for sure: no field at all
    EXPECT_EQ(format_close_record(r, false).find("rule="), std::string::npos);
    EXPECT_EQ(format_close_record(r, true).find("\"rule\""), std::string::npos);
}

TEST(CloseRecord, NumbersAndTimes) {
    CloseRecord r = sample(CloseReason::client_eof);
    r.duration_ms = 1'005;
    r.bytes_up = 0;
    r.bytes_down = UINT64_MAX;
    r.worker = 65535;
    std::string s = format_close_record(r, false);
    EXPECT_NE(s.find(" duration=1.005s "), std::string::npos) << s;
    EXPECT_NE(s.find(" bytes_up=0 bytes_down=18446744073709551615 "), std::string::npos) << s;
    EXPECT_NE(s.find(" worker=65535"), std::string::npos) << s;
    r.duration_ms = 0;
    EXPECT_NE(format_close_record(r, false).find(" duration=0.000s "), std::string::npos);
    r.duration_ms = 86'400'000;
    EXPECT_NE(format_close_record(r, true).find("\"duration_s\":86400.000,"), std::string::npos);

    // The formatter keeps the text of the last second: crossing seconds (and going back)
    // must give the right text each time.
    CloseFormatter f;
    char b[24];
    auto iso = [&](int64_t ms) {
        f.iso_ms(ms, b);
        return std::string(b, sizeof b);
    };
    EXPECT_EQ(iso(1'700'000'000'999), "2023-11-14T22:13:20.999Z");
    EXPECT_EQ(iso(1'700'000'001'000), "2023-11-14T22:13:21.000Z");
    EXPECT_EQ(iso(1'700'000'000'001), "2023-11-14T22:13:20.001Z");
    EXPECT_EQ(iso(0), "1970-01-01T00:00:00.000Z");
    EXPECT_EQ(iso(951'825'600'042), "2000-02-29T12:00:00.042Z");
}

TEST(CloseRecord, LongestLineFits) {
    CloseRecord r = sample(CloseReason::half_closed_timeout);
    for (sockaddr_in6* a : {&r.client, &r.original, &r.upstream}) {
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(65535);
        inet_pton(AF_INET6, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", &a->sin6_addr);
    }
    set_record_name(r.listener, std::string(60, 'l'));
    set_record_name(r.rule, std::string(60, 'r'));
    EXPECT_EQ(std::string(r.listener), std::string(47, 'l'));  // truncated, terminated
    r.duration_ms = UINT64_MAX;
    r.bytes_up = r.bytes_down = UINT64_MAX;
    r.worker = 65535;
    r.start_unix_ms = 253'402'300'799'999;  // 9999-12-31T23:59:59.999Z
    for (bool json : {false, true}) {
        std::string s = format_close_record(r, json);
        EXPECT_LT(s.size(), CloseFormatter::kMaxLine) << s;
        EXPECT_NE(s.find("9999-12-31T23:59:59.999Z"), std::string::npos) << s;
    }
}

TEST(CloseRing, FullRingDropsAndCounts) {
    CloseRing ring(4);
    CloseRecord r = sample(CloseReason::client_eof);
    for (int i = 0; i < 4; ++i) {
        r.worker = static_cast<uint16_t>(i);
        EXPECT_TRUE(ring.push(r));
    }
    EXPECT_FALSE(ring.push(r));
    EXPECT_FALSE(ring.push(r));
    EXPECT_EQ(ring.dropped(), 2u);
    CloseRecord out;
    for (int i = 0; i < 4; ++i) {
        ASSERT_TRUE(ring.pop(out));
        EXPECT_EQ(out.worker, i);  // in order
    }
    EXPECT_FALSE(ring.pop(out));
    EXPECT_TRUE(ring.push(r));  // room again
}

TEST(LogPrefix, JournalPriorities) {
    EXPECT_EQ(log::prefix(log::Level::error, true, 0), "<3>");
    EXPECT_EQ(log::prefix(log::Level::warning, true, 0), "<4>");
    EXPECT_EQ(log::prefix(log::Level::info, true, 0), "<6>");
    EXPECT_EQ(log::prefix(log::Level::debug, true, 0), "<7>");
}

TEST(LogPrefix, TimestampWithoutJournal) {
    EXPECT_EQ(log::prefix(log::Level::error, false, 1'700'000'000'123),
              "2023-11-14T22:13:20.123Z ");
    EXPECT_EQ(log::prefix(log::Level::debug, false, 5), "1970-01-01T00:00:00.005Z ");
}

TEST(LogLevel, ParseAndFilter) {
    log::Level lv;
    EXPECT_TRUE(log::parse_level("warning", lv));
    EXPECT_EQ(lv, log::Level::warning);
    EXPECT_FALSE(log::parse_level("verbose", lv));
    log::init(log::Level::warning, log::Prefix::timestamp);
    EXPECT_TRUE(log::enabled(log::Level::error));
    EXPECT_TRUE(log::enabled(log::Level::warning));
    EXPECT_FALSE(log::enabled(log::Level::info));
    EXPECT_FALSE(log::journal());
    log::init(log::Level::debug, log::Prefix::journal);
    EXPECT_TRUE(log::enabled(log::Level::debug));
    EXPECT_TRUE(log::journal());
}

}  // namespace
}  // namespace tp::engine
