// user_data packing: every field survives the round trip, and the generation wraps at 24 bits.
#include "engine/user_data.h"

#include <gtest/gtest.h>

namespace tp::engine {
namespace {

TEST(UserData, RoundTrip) {
    const Op ops[] = {Op::accept, Op::connect, Op::recv_client, Op::send_upstream,
                      Op::tick,   Op::wake,    Op::ignore,      Op::cancel_upstream};
    const uint32_t gens[] = {0, 1, 0x123456, 0xFFFFFF};
    const uint32_t slots[] = {0, 1, 65535, 0xFFFFFFFF};
    for (Op op : ops) {
        for (uint32_t g : gens) {
            for (uint32_t s : slots) {
                UserData u{op, g, s};
                UserData v = UserData::unpack(u.pack());
                EXPECT_EQ(v.op, op);
                EXPECT_EQ(v.gen, g);
                EXPECT_EQ(v.slot, s);
            }
        }
    }
}

TEST(UserData, GenerationIsMaskedTo24Bits) {
    UserData u{Op::connect, 0x1000001, 7};
    UserData v = UserData::unpack(u.pack());
    EXPECT_EQ(v.gen, 1u);
    EXPECT_EQ(v.op, Op::connect);
    EXPECT_EQ(v.slot, 7u);
}

}  // namespace
}  // namespace tp::engine
