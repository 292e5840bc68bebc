// Each op's rules (docs/protocol.md, "Ops"), as decode_request enforces them before the daemon acts: which
// requests name a vSMMU, the fields' values, names and tails, per host kind. The format itself is in
// protocol_test.cpp.
#include <gtest/gtest.h>

#include <limits>

#include "packets.hpp"
#include "service/wire_wishes.hpp"

namespace vsmmu::service::test {
namespace {

constexpr std::uint64_t kMax64 = std::numeric_limits<std::uint64_t>::max();

// ---- Header::vsmmu (docs/protocol.md, "Ops": the vSMMU column)

TEST(OpsTarget, RequestsOnAVsmmuWithoutOneAreRefused) {
  const std::vector<std::vector<std::byte>> need = {
      build(request(Op::destroy_vsmmu, 0), DestroyRequest{}),
      attach("nic1", 0),
      build(request(Op::detach_device, 0), DetachRequest{}),
      mmio_read(0, 4, 0),
      mmio_write(0, 4, 0, 0, 0),
      set_irq(0, 0),
      build(request(Op::save_state, 0), SaveStateRequest{}),
      build(request(Op::load_state, 0), LoadStateRequest{.state_bytes = 64}),
  };
  for (const auto& packet : need)
    EXPECT_TRUE(refused(decode(packet), EINVAL, "header.vsmmu", "CREATE_VSMMU's reply"));
}

TEST(OpsTarget, RequestsNotForAVsmmuThatNameOneAreRefused) {
  auto with_vsmmu = [](std::vector<std::byte> packet) {
    Header h;
    std::memcpy(&h, packet.data(), sizeof h);
    h.vsmmu = 5;
    std::memcpy(packet.data(), &h, sizeof h);
    return packet;
  };
  EXPECT_TRUE(refused(decode(with_vsmmu(hello())), EINVAL, "header.vsmmu", "must be 0"));
  EXPECT_TRUE(refused(decode(with_vsmmu(create())), EINVAL, "header.vsmmu"));
  EXPECT_TRUE(refused(decode(with_vsmmu(add_region()), 1), EINVAL, "header.vsmmu"));
  EXPECT_TRUE(refused(decode(with_vsmmu(build(request(Op::remove_region), RemoveRegionRequest{}))), EINVAL,
                      "header.vsmmu"));
  EXPECT_TRUE(refused(decode(with_vsmmu(dma_read("nic0.dma", 0, 8))), EINVAL, "header.vsmmu"));
  // "Live migration (16-20)": the dirty log is the VM's, not one vSMMU's.
  EXPECT_TRUE(refused(decode(with_vsmmu(build(request(Op::dirty_start), DirtyStartRequest{}))), EINVAL, "header.vsmmu",
                      "DIRTY_START is not addressed to a vSMMU"));
  EXPECT_TRUE(refused(decode(with_vsmmu(build(request(Op::dirty_stop), DirtyStopRequest{}))), EINVAL, "header.vsmmu"));
  EXPECT_TRUE(refused(decode(with_vsmmu(build(request(Op::dirty_get), DirtyGetRequest{})), 1), EINVAL, "header.vsmmu"));
}

// docs/protocol.md, STATS: a vSMMU's figures with a handle, the connection's and the daemon's without.
TEST(OpsTarget, StatsIsAnsweredWithOrWithoutAVsmmu) {
  EXPECT_TRUE(decode(build(request(Op::stats, 0), StatsRequest{})));
  EXPECT_TRUE(decode(build(request(Op::stats, 9), StatsRequest{})));
  StatsRequest s;
  s.reserved = 1;
  EXPECT_TRUE(refused(decode(build(request(Op::stats), s)), EINVAL, "body.reserved", "must be zero"));
}

// ---- HELLO (docs/protocol.md, "HELLO (1)")

TEST(OpsHello, AWrongMagicIsRefused) {
  HelloRequest h;
  h.magic = 0x12345678;
  EXPECT_TRUE(refused(decode(build(request(Op::hello), h)), EINVAL, "body.magic", "vsmmud socket"));
}

TEST(OpsHello, AVersionRangeWithoutVersion1IsRefusedSayingWhichVersionsTheDaemonSpeaks) {
  HelloRequest h;
  h.version_min = 2;
  h.version_max = 4;
  EXPECT_TRUE(refused(decode(build(request(Op::hello), h)), EINVAL, "body.version_min", "speaks protocol version 1"));
  h.version_min = 0;
  h.version_max = 0;
  EXPECT_TRUE(refused(decode(build(request(Op::hello), h)), EINVAL, "body.version_max", "speaks protocol version 1"));
  h.version_min = 3;
  h.version_max = 1;
  EXPECT_TRUE(refused(decode(build(request(Op::hello), h)), EINVAL, "body.version_min", "above version_max"));
  h.version_min = 0;
  h.version_max = 7;
  EXPECT_TRUE(decode(build(request(Op::hello), h)));  // a range around 1 is fine
}

// Features are an offer: the reply says which ones the daemon takes.
TEST(OpsHello, UnknownFeatureBitsAreAcceptedAndReservedMustBeZero) {
  HelloRequest h;
  h.features = kMax64;
  auto r = decode(build(request(Op::hello), h));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(args<HelloArgs>(r).fixed.features, kMax64);
  h.reserved = 1;
  EXPECT_TRUE(refused(decode(build(request(Op::hello), h)), EINVAL, "body.reserved"));
}

// ---- CREATE_VSMMU (docs/protocol.md, "CREATE_VSMMU (2)")

TEST(OpsCreate, AnUnknownPolicyOrFlagIsRefused) {
  CreateRequest c = create_body("v", "nic0");
  c.policy = 2;
  EXPECT_TRUE(refused(decode(create_with(c, "v", "nic0")), EINVAL, "body.policy", "per_command"));
  c.policy = 0;
  c.flags = 1u << 2;
  EXPECT_TRUE(refused(decode(create_with(c, "v", "nic0")), EINVAL, "body.flags", "unknown bits 0x4"));
  c.flags = kCreateGbpaAbort | kCreateMsiDelivery;  // the feature MSI delivery needs is the session's to check
  EXPECT_TRUE(decode(create_with(c, "v", "nic0")));
}

TEST(OpsCreate, MalformedWishesAreRefusedNamingTheWish) {
  CreateRequest c = create_body("v", "nic0");
  c.wishes.present = 1u << 20;
  EXPECT_TRUE(refused(decode(create_with(c, "v", "nic0")), EINVAL, "wishes.present"));
  c.wishes.present = kWishRil;
  c.wishes.ril = 2;
  EXPECT_TRUE(refused(decode(create_with(c, "v", "nic0")), EINVAL, "wishes.ril", "boolean"));
  c.wishes.ril = 0;
  c.wishes.present = kWishMsi;
  c.wishes.msi = 2;
  EXPECT_TRUE(refused(decode(create_with(c, "v", "nic0")), EINVAL, "wishes.msi", "boolean"));
  c.wishes.msi = 1;
  EXPECT_TRUE(decode(create_with(c, "v", "nic0")));  // the feature it needs is the session's to check
  c.wishes.present = kWishStall;
  c.wishes.stall = 2;
  EXPECT_TRUE(refused(decode(create_with(c, "v", "nic0")), EINVAL, "wishes.stall", "boolean"));
  c.wishes.stall = 1;
  EXPECT_TRUE(decode(create_with(c, "v", "nic0")));
  c.wishes.present = 1u << 15;  // the first bit after kWishStall
  EXPECT_TRUE(refused(decode(create_with(c, "v", "nic0")), EINVAL, "wishes.present", "unknown bits 0x8000"));
  c.wishes.present = kWishStall;
  c.wishes.reserved[0] = 1;
  EXPECT_TRUE(refused(decode(create_with(c, "v", "nic0")), EINVAL, "wishes.reserved"));
}

// CREATE_VSMMU's wishes (docs/protocol.md, "CREATE_VSMMU"; service/wire_wishes.hpp): a clear `present` bit is
// "auto", a set one the stated value; every field a VMM states crosses the wire and reaches the vSMMU unchanged,
// and a VMM that states nothing leaves every field on auto.
TEST(OpsCreate, WishesRoundTripWithAutoAsAClearBit) {
  const WireWishes none = to_wire(nesting::VsmmuWishes{});
  EXPECT_EQ(none.present, 0u);
  CreateRequest c = create_body("v", "nic0");
  c.wishes = none;
  auto plain = decode(create_with(c, "v", "nic0"));
  ASSERT_TRUE(plain) << plain.error().to_string();
  const nesting::VsmmuWishes autos = from_wire(std::get<CreateArgs>(plain->args).fixed.wishes, false);
  EXPECT_FALSE(autos.ipa_bits || autos.oas_bits || autos.sid_bits || autos.ssid_bits || autos.ril || autos.ats ||
               autos.st_level || autos.tt_endian || autos.gran4k || autos.gran16k || autos.gran64k || autos.msi ||
               autos.stall);
  EXPECT_FALSE(autos.msi_delivery);

  nesting::VsmmuWishes n;
  n.ipa_bits = 40;
  n.oas_bits = 44;
  n.sid_bits = 8;
  n.ssid_bits = 5;
  n.ril = false;
  n.ats = true;
  n.st_level = smmu::StLevel::two_level;
  n.tt_endian = smmu::TtEndian::big;
  n.gran4k = true;
  n.gran16k = false;
  n.gran64k = true;
  n.cmdq_log2 = 8;
  n.eventq_log2 = 7;
  n.msi = false;
  n.stall = true;
  c.wishes = to_wire(n);
  EXPECT_EQ(c.wishes.present, kKnownWishes) << "every field stated";
  c.flags = kCreateMsiDelivery;
  auto stated = decode(create_with(c, "v", "nic0"));
  ASSERT_TRUE(stated) << stated.error().to_string();
  const auto& args = std::get<CreateArgs>(stated->args);
  const nesting::VsmmuWishes back = from_wire(args.fixed.wishes, (args.fixed.flags & kCreateMsiDelivery) != 0);
  EXPECT_EQ(back.ipa_bits, n.ipa_bits);
  EXPECT_EQ(back.oas_bits, n.oas_bits);
  EXPECT_EQ(back.sid_bits, n.sid_bits);
  EXPECT_EQ(back.ssid_bits, n.ssid_bits);
  EXPECT_EQ(back.ril, n.ril);
  EXPECT_EQ(back.ats, n.ats);
  EXPECT_EQ(back.st_level, n.st_level);
  EXPECT_EQ(back.tt_endian, n.tt_endian);
  EXPECT_EQ(back.gran4k, n.gran4k);
  EXPECT_EQ(back.gran16k, n.gran16k);
  EXPECT_EQ(back.gran64k, n.gran64k);
  EXPECT_EQ(back.cmdq_log2, n.cmdq_log2);
  EXPECT_EQ(back.eventq_log2, n.eventq_log2);
  EXPECT_EQ(back.msi, n.msi);
  EXPECT_EQ(back.stall, n.stall);
  EXPECT_TRUE(back.msi_delivery);
}

// docs/protocol.md, "Names".
TEST(OpsCreate, NamesArePrintableAsciiWithoutSpacesOfAtMost64Bytes) {
  const std::string longest(kMaxNameLength, 'n');
  EXPECT_TRUE(decode(create(longest, longest)));
  EXPECT_TRUE(decode(create("!~", "pci/0000:01:00.0")));
  const std::string too_long(kMaxNameLength + 1, 'n');
  EXPECT_TRUE(refused(decode(create(too_long, "nic0")), EINVAL, "name_len", "at most 64"));
  EXPECT_TRUE(refused(decode(create("v", too_long)), EINVAL, "device_name_len", "at most 64"));
  EXPECT_TRUE(refused(decode(create("my vsmmu", "nic0")), EINVAL, "name", "byte 2 is 0x20"));
  EXPECT_TRUE(refused(decode(create("v", std::string("nic0\0", 5))), EINVAL, "device_name", "no terminating NUL"));
  EXPECT_TRUE(refused(decode(create("v", "nic\x7f")), EINVAL, "device_name", "0x7f"));
  EXPECT_TRUE(refused(decode(create("v\xc3\xa9", "nic0")), EINVAL, "name", "0xc3"));
}

TEST(OpsCreate, TheVsmmuNameMayBeEmptyTheSimulatedDeviceNameMayNot) {
  auto r = decode(create("", "nic0"));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(args<CreateArgs>(r).name, "");
  EXPECT_EQ(args<CreateArgs>(r).device.name, "nic0");
  EXPECT_TRUE(refused(decode(create("v", "")), EINVAL, "device_name_len", "must be named"));
}

// The tail is the vSMMU's name, then the device's; a length that overruns the tail names itself.
TEST(OpsCreate, TheTailIsTheVsmmuNameThenTheDeviceName) {
  auto r = decode(create("first", "second"));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(args<CreateArgs>(r).name, "first");
  EXPECT_EQ(args<CreateArgs>(r).device.name, "second");
  CreateRequest c = create_body("first", "second");
  c.device_name_len = 7;
  EXPECT_TRUE(refused(decode(create_with(c, "first", "second")), EINVAL, "device_name_len", "only 6 follow"));
  c = create_body("first", "second");
  c.name_len = 12;
  EXPECT_TRUE(refused(decode(create_with(c, "first", "second")), EINVAL, "name_len", "only 11 follow"));
}

// docs/protocol.md, "CREATE_VSMMU (2)", fds: on the kernel host the device is its VFIO cdev fd, never a name.
TEST(OpsCreate, OnTheKernelHostTheDeviceIsTheFdAndNotAName) {
  auto r = decode_kernel(create("v", ""), 1);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(args<CreateArgs>(r).device.fd_index, 0);
  EXPECT_EQ(args<CreateArgs>(r).device.name, "");
  EXPECT_TRUE(refused(decode_kernel(create("v", "nic0"), 1), EINVAL, "device_name_len", "send no name"));
  EXPECT_TRUE(refused(decode(create("v", "nic0"), 1), EINVAL, "fds", "named in the tail"));
}

// ---- ADD_REGION / REMOVE_REGION (docs/protocol.md, "ADD_REGION (4) and REMOVE_REGION (5)")

TEST(OpsRegion, AddressesLengthAndOffsetMustBePageAligned) {
  EXPECT_TRUE(refused(decode(add_region(0x40000800, 0x1000), 1), EINVAL, "body.gpa", "0x1000"));
  EXPECT_TRUE(refused(decode(add_region(0x40000000, 0x1800), 1), EINVAL, "body.length"));
  EXPECT_TRUE(refused(decode(add_region(0x40000000, 0x1000, 8), 1), EINVAL, "body.fd_offset"));
  EXPECT_TRUE(refused(decode(add_region(0x40000000, 0), 1), EINVAL, "body.length", "is 0"));
}

// The region's end, gpa + length (and fd_offset + length), must be a 64-bit number: 2^64 itself is not.
TEST(OpsRegion, ARegionWhoseEndPasses64BitsIsRefused) {
  EXPECT_TRUE(decode(add_region(kMax64 - 0x1fff, 0x1000), 1));
  EXPECT_TRUE(refused(decode(add_region(kMax64 - 0xfff, 0x1000), 1), EINVAL, "body.length", "gpa + 0x1000 passes 2^64"));
  EXPECT_TRUE(refused(decode(add_region(0x1000, kMax64 - 0xfff), 1), EINVAL, "body.length", "gpa +"));
  EXPECT_TRUE(refused(decode(add_region(0, 0x2000, kMax64 - 0x1fff), 1), EINVAL, "body.length", "fd_offset +"));
}

TEST(OpsRegion, ReservedFieldsMustBeZeroAndRemoveTakesAnAlignedGpa) {
  AddRegionRequest a = region_body(0, 0x1000);
  a.reserved = 1;
  EXPECT_TRUE(refused(decode(build(request(Op::add_region), a), 1), EINVAL, "body.reserved"));
  RemoveRegionRequest r;
  r.gpa = 0x1004;
  EXPECT_TRUE(refused(decode(build(request(Op::remove_region), r)), EINVAL, "body.gpa"));
  r.gpa = 0x1000;
  r.reserved = 2;
  EXPECT_TRUE(refused(decode(build(request(Op::remove_region), r)), EINVAL, "body.reserved"));
}

// ---- ATTACH_DEVICE / DETACH_DEVICE / DESTROY_VSMMU (docs/protocol.md, "ATTACH_DEVICE (6) and DETACH_DEVICE (7)",
// "DESTROY_VSMMU (3)")

TEST(OpsAttach, TheDeviceFollowsCreatesRulesPerHost) {
  EXPECT_TRUE(refused(decode(attach("")), EINVAL, "device_name_len", "must be named"));
  EXPECT_TRUE(refused(decode(attach("nic 1")), EINVAL, "device_name", "byte 3"));
  EXPECT_TRUE(refused(decode(attach(std::string(65, 'd'))), EINVAL, "device_name_len"));
  auto r = decode_kernel(attach(""), 1);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(args<AttachArgs>(r).device.fd_index, 0);
  EXPECT_EQ(args<AttachArgs>(r).device.vsid, 0x18u);
  EXPECT_TRUE(refused(decode_kernel(attach("nic1"), 1), EINVAL, "device_name_len"));
  AttachRequest a = attach_body(0x18, "nic1");
  a.reserved = 1;
  EXPECT_TRUE(refused(decode(build(request(Op::attach_device, 1), a, {bytes_of("nic1")})), EINVAL, "body.reserved"));
}

TEST(OpsDestroy, ReservedMustBeZero) {
  DestroyRequest d;
  d.reserved = 3;
  EXPECT_TRUE(refused(decode(build(request(Op::destroy_vsmmu, 1), d)), EINVAL, "body.reserved"));
}

// ---- MMIO (docs/protocol.md, "MMIO_READ (8) and MMIO_WRITE (9)"; IHI 0070 6.2: 32- and 64-bit accesses)

TEST(OpsMmio, OnlyFourAndEightByteAccessesAreTaken) {
  for (std::uint32_t width : {0u, 1u, 2u, 3u, 6u, 16u}) {
    SCOPED_TRACE(width);
    EXPECT_TRUE(refused(decode(mmio_read(0, width)), EINVAL, "body.width", "4 or 8"));
    EXPECT_TRUE(refused(decode(mmio_write(0, width, 0)), EINVAL, "body.width"));
  }
  EXPECT_TRUE(decode(mmio_read(0, 4)));
  EXPECT_TRUE(decode(mmio_read(0, 8)));
}

TEST(OpsMmio, AnAccessMustBeAlignedToItsWidth) {
  EXPECT_TRUE(refused(decode(mmio_read(2, 4)), EINVAL, "body.offset", "aligned"));
  EXPECT_TRUE(refused(decode(mmio_read(4, 8)), EINVAL, "body.offset", "aligned"));
  EXPECT_TRUE(decode(mmio_read(4, 4)));
}

TEST(OpsMmio, AnAccessMustLieInsidePages0And1) {
  EXPECT_TRUE(decode(mmio_read(kMmioSpan - 4, 4)));
  EXPECT_TRUE(decode(mmio_read(kMmioSpan - 8, 8)));
  EXPECT_TRUE(refused(decode(mmio_read(kMmioSpan, 4)), EINVAL, "body.offset", "past the register pages"));
  EXPECT_TRUE(refused(decode(mmio_write(kMax64 - 7, 8, 0)), EINVAL, "body.offset", "past the register pages"));
}

TEST(OpsMmio, AFourByteWriteCarriesItsValueInTheLow32Bits) {
  EXPECT_TRUE(decode(mmio_write(0x20, 4, 0xffffffff)));
  EXPECT_TRUE(refused(decode(mmio_write(0x20, 4, 0x100000000ull)), EINVAL, "body.value", "high 32 bits"));
}

// ---- SET_IRQ (docs/protocol.md, "SET_IRQ (10): interrupts")

TEST(OpsSetIrq, ThreeLinesAnEventfdSetsOneNoFdClearsIt) {
  for (std::uint32_t line = 0; line <= 2; ++line) {
    auto set = decode(set_irq(line), 1);
    ASSERT_TRUE(set) << set.error().to_string();
    EXPECT_EQ(args<SetIrqArgs>(set).line, static_cast<IrqLine>(line));
    EXPECT_TRUE(args<SetIrqArgs>(set).has_fd);
    auto clear = decode(set_irq(line), 0);
    ASSERT_TRUE(clear) << clear.error().to_string();
    EXPECT_FALSE(args<SetIrqArgs>(clear).has_fd);
  }
  EXPECT_TRUE(refused(decode(set_irq(3), 1), EINVAL, "body.line", "cmd_sync"));
}

// ---- SIM_DMA (docs/protocol.md, "SIM_DMA (12)")

TEST(OpsSimDma, TheKernelHostAnswersEopnotsuppNamingItsHost) {
  EXPECT_TRUE(refused(decode_kernel(dma_read("nic0.dma", 0, 8), 0), EOPNOTSUPP, "header.op", "runs the kernel host"));
}

TEST(OpsSimDma, DirectionFlagsAndSsidAreChecked) {
  SimDmaRequest d = dma_body(DmaDirection::read, 0, 8, "e");
  d.direction = 2;
  EXPECT_TRUE(refused(decode(build(request(Op::sim_dma), d, {bytes_of("e")})), EINVAL, "body.direction"));
  d.direction = 1;
  d.flags = 2;
  EXPECT_TRUE(refused(decode(build(request(Op::sim_dma), d, {bytes_of("e")})), EINVAL, "body.flags"));
  d.flags = 0;
  d.ssid = 3;
  EXPECT_TRUE(refused(decode(build(request(Op::sim_dma), d, {bytes_of("e")})), EINVAL, "body.ssid", "SSID valid"));
  d.flags = kDmaSsidValid;
  auto r = decode(build(request(Op::sim_dma), d, {bytes_of("e")}));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(args<SimDmaArgs>(r).ssid, std::optional<std::uint32_t>(3));
  EXPECT_TRUE(args<SimDmaArgs>(r).data.empty());
}

TEST(OpsSimDma, TheEngineIsNamedLikeADevice) {
  EXPECT_TRUE(refused(decode(dma_read("", 0, 8)), EINVAL, "engine_len", "must be named"));
  EXPECT_TRUE(refused(decode(dma_read(std::string(65, 'e'), 0, 8)), EINVAL, "engine_len"));
  EXPECT_TRUE(refused(decode(dma_read("dma engine", 0, 8)), EINVAL, "engine", "byte 3"));
}

TEST(OpsSimDma, AWriteCarriesExactlyLengthBytesAfterTheName) {
  EXPECT_TRUE(refused(decode(dma_write("e", 0, "")), EINVAL, "body.length", "is 0"));
  SimDmaRequest d = dma_body(DmaDirection::write, 0, 5, "e");
  EXPECT_TRUE(refused(decode(build(request(Op::sim_dma), d, {bytes_of("e"), bytes_of("abcd")})), EINVAL,
                      "body.length", "only 4 follow"));
  EXPECT_TRUE(refused(decode(build(request(Op::sim_dma), d, {bytes_of("e"), bytes_of("abcdef")})), EINVAL, "tail"));
  // A read carries no data.
  d = dma_body(DmaDirection::read, 0, 4, "e");
  EXPECT_TRUE(refused(decode(build(request(Op::sim_dma), d, {bytes_of("e"), bytes_of("abcd")})), EINVAL, "tail"));
}

// A read's reply (header, SimDmaReply, the bytes) must fit in one packet of max_message.
TEST(OpsSimDma, AReadWhoseReplyWouldExceedMaxMessageIsEmsgsize) {
  const std::uint32_t fits = kMaxMessage - sizeof(Header) - sizeof(SimDmaReply);
  EXPECT_TRUE(decode(dma_read("e", 0, fits)));
  EXPECT_TRUE(refused(decode(dma_read("e", 0, fits + 1)), EMSGSIZE, "body.length", "max_message 4096"));
  EXPECT_TRUE(refused(decode(dma_read("e", 0, 0xffffffff)), EMSGSIZE, "body.length"));
}

TEST(OpsSimDma, ADmaWhoseEndPasses64BitsIsRefused) {
  EXPECT_TRUE(decode(dma_read("e", kMax64 - 7, 7)));
  EXPECT_TRUE(refused(decode(dma_read("e", kMax64 - 7, 8)), EINVAL, "body.length", "iova +"));
}

// ---- live migration (docs/protocol.md, "Live migration (16-20)")

TEST(OpsDirty, StartDefinesNoFlagsAndStopsReservedMustBeZero) {
  DirtyStartRequest start;
  start.flags = 1;
  EXPECT_TRUE(refused(decode(build(request(Op::dirty_start), start)), EINVAL, "body.flags", "defines no flags"));
  DirtyStopRequest stop;
  stop.reserved = 4;
  EXPECT_TRUE(refused(decode(build(request(Op::dirty_stop), stop)), EINVAL, "body.reserved", "must be zero"));
}

TEST(OpsDirty, GetTakesNoClearOnlyAndPageAlignedAddresses) {
  auto get = [](std::uint32_t flags, std::uint64_t gpa, std::uint64_t offset) {
    DirtyGetRequest g;
    g.flags = flags;
    g.region_gpa = gpa;
    g.bitmap_offset = offset;
    return decode(build(request(Op::dirty_get), g), 1);
  };
  EXPECT_TRUE(get(kDirtyGetNoClear, 0x40000000, 0x1000));
  EXPECT_TRUE(refused(get(2, 0x40000000, 0), EINVAL, "body.flags", "unknown bits 0x2"));
  EXPECT_TRUE(refused(get(0, 0x40000800, 0), EINVAL, "body.region_gpa", "4 KiB page"));
  EXPECT_TRUE(refused(get(0, 0x40000000, 8), EINVAL, "body.bitmap_offset", "maps the bitmap file"));
  // A tail after the body is refused like any other op's.
  const std::byte extra[4] = {};
  EXPECT_TRUE(refused(decode(build(request(Op::dirty_get), DirtyGetRequest{}, {std::span<const std::byte>(extra)}), 1),
                      EINVAL, "tail"));
}

TEST(OpsState, SaveReservedMustBeZero) {
  SaveStateRequest s;
  s.reserved = 1;
  EXPECT_TRUE(refused(decode(build(request(Op::save_state, 1), s), 1), EINVAL, "body.reserved"));
}

// A state is its 32-byte header and a body of kilobytes (nesting/migration_state.hpp): none, or one larger than
// 64 MiB, is not a saved state.
TEST(OpsState, LoadTakesOneTo64MibAndNoFlags) {
  auto load = [](std::uint32_t flags, std::uint64_t bytes) {
    LoadStateRequest l;
    l.flags = flags;
    l.state_bytes = bytes;
    return decode(build(request(Op::load_state, 1), l), 1);
  };
  EXPECT_TRUE(load(0, 1));
  EXPECT_TRUE(load(0, kMaxStateBytes));
  EXPECT_TRUE(refused(load(0, 0), EINVAL, "body.state_bytes", "is 0"));
  EXPECT_TRUE(refused(load(0, kMaxStateBytes + 1), E2BIG, "body.state_bytes", "not a saved state"));
  EXPECT_TRUE(refused(load(1, 64), EINVAL, "body.flags", "defines no flags"));
}

}  // namespace
}  // namespace vsmmu::service::test
