// The vSMMU's migration state format (nesting/migration_state.hpp, docs/migration.md "The state format"):
// what a destination reads back is what the source wrote, and a state written by another implementation of
// the documented format (tests/fuzz/nesting/make_state_seeds.py, Python's zlib CRC-32 and a hand CBOR
// encoder) is read.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "nesting/migration_state.hpp"

namespace vsmmu::nesting {
namespace {

VsmmuState sample() {
  VsmmuState s;
  s.name = "vsmmu7";
  s.ids.idr0 = smmu::Idr0::of(0x0d44101b);
  s.ids.idr5 = smmu::Idr5::of(0x74);
  s.registers.CR0 = 0xd;
  s.registers.STRTAB_BASE = 0x4000'0000;
  s.registers.EVENTQ_PROD = 0x80003;
  s.registers.PRIQ_IRQ_CFG2 = 0x11;
  s.devices = {{0x10, "nic0", StreamState::translate}, {0x18, "nic1", StreamState::abort}};
  smmu::Event e;
  e.dw[0] = 0x10'0000'0010;
  e.dw[2] = 0x7f00'0000'4000;
  s.events = {e};
  s.events_lost = 2;
  return s;
}

TEST(MigrationState, WhatIsWrittenIsReadBack) {
  const VsmmuState s = sample();
  const auto blob = encode_state(s);
  ASSERT_GT(blob.size(), kStateHeaderSize);
  EXPECT_EQ(std::memcmp(blob.data(), "VSMMUSTA", 8), 0);
  auto back = decode_state(blob);
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(back->name, "vsmmu7");
  EXPECT_EQ(back->ids.idr0.value(), 0x0d44101bU);
  EXPECT_EQ(back->ids.idr5.value(), 0x74U);
  EXPECT_EQ(back->registers, s.registers);
  ASSERT_EQ(back->devices.size(), 2U);
  EXPECT_EQ(back->devices[1].vsid, 0x18U);
  EXPECT_EQ(back->devices[1].name, "nic1");
  EXPECT_EQ(back->devices[1].state, StreamState::abort);
  ASSERT_EQ(back->events.size(), 1U);
  EXPECT_EQ(back->events[0].dw[2], 0x7f00'0000'4000ULL);
  EXPECT_EQ(back->events_lost, 2U);
}

// Trailing bytes after the body are refused like a short body: the header's body size is the state's size.
TEST(MigrationState, TrailingBytesAreRefused) {
  auto blob = encode_state(sample());
  blob.push_back(std::byte{0});
  auto r = decode_state(blob);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EBADMSG);
  EXPECT_NE(r.error().message.find("extra bytes"), std::string::npos) << r.error();
}

// A body without a field the version defines is refused naming the field.
TEST(MigrationState, AMissingFieldIsNamed) {
  const std::string body = "\xa1\x66" "format" "\x6b" "vsmmu-state";  // CBOR {"format": "vsmmu-state"}
  auto r = decode_state(seal_state(std::as_bytes(std::span(body.data(), body.size()))));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EBADMSG);
  EXPECT_NE(r.error().message.find("\"name\""), std::string::npos) << r.error();
}

// A body whose "format" is not a string (here an array, as state_fuzz found) is refused as not a vsmmu-state
// map: an error for the VMM, never an exception out of LOAD_STATE.
TEST(MigrationState, AFormatOfTheWrongTypeIsRefused) {
  const std::string body = "\xa1\x66" "format" "\x81\x01";  // CBOR {"format": [1]}
  auto r = decode_state(seal_state(std::as_bytes(std::span(body.data(), body.size()))));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EBADMSG);
  EXPECT_NE(r.error().message.find("not a vsmmu-state map"), std::string::npos) << r.error();
}

// Names go into the destination's logs and LOAD_STATE's errors: one with a control character (here a newline
// that would forge a log line) is refused, naming where; names other vsmmu users may choose (spaces, UTF-8)
// are read back.
TEST(MigrationState, ANameWithAControlCharacterIsRefused) {
  VsmmuState s = sample();
  s.devices[1].name = "nic1\nvsmmud: forged line";
  auto r = decode_state(encode_state(s));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EBADMSG);
  EXPECT_NE(r.error().message.find("device name at vSID 0x18 has a control character (0x0a) at byte 4"),
            std::string::npos)
      << r.error();
  s = sample();
  s.name = "vsmmu \x1b[2J";
  r = decode_state(encode_state(s));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("vSMMU name has a control character (0x1b)"), std::string::npos) << r.error();
  s = sample();
  s.name = "guest 7 vSMMU \xc3\xa9";
  auto ok = decode_state(encode_state(s));
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_EQ(ok->name, s.name);
}

TEST(MigrationState, AStateWrittenFromTheDocumentedFormatIsRead) {
  std::ifstream f(VSMMU_STATE_SEED, std::ios::binary);
  ASSERT_TRUE(f) << VSMMU_STATE_SEED;
  const std::vector<char> bytes{std::istreambuf_iterator<char>(f), {}};
  auto s = decode_state(std::as_bytes(std::span(bytes)));
  ASSERT_TRUE(s) << s.error();
  EXPECT_EQ(s->name, "vsmmu0");
  EXPECT_EQ(s->registers.STRTAB_BASE, 0x4000'0000U);
  ASSERT_EQ(s->devices.size(), 1U);
  EXPECT_EQ(s->devices[0].state, StreamState::translate);
  EXPECT_EQ(s->events.size(), 1U);
}

}  // namespace
}  // namespace vsmmu::nesting
