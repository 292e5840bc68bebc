// The vsmmud wire format (service/protocol.hpp, docs/protocol.md) as a VMM meets it: the layout its own
// definitions must match, the header, size-first bodies and the zero-extension rule, tails, which fds a
// request may carry, and error replies. The rules of each op are in ops_test.cpp.
#include <gtest/gtest.h>

#include <cstddef>

#include "packets.hpp"

namespace vsmmu::service::test {
namespace {

// docs/protocol.md, "Header" and the tables under "Ops" (offsets and sizes): a Rust, Go or C client declares
// these structs itself, so their sizes and offsets are the protocol, not an accident of this compiler.
TEST(ProtocolLayout, StructsHaveTheSizesAndOffsetsTheDocumentGives) {
  EXPECT_EQ(sizeof(Header), 24u);
  EXPECT_EQ(offsetof(Header, op), 4u);
  EXPECT_EQ(offsetof(Header, flags), 6u);
  EXPECT_EQ(offsetof(Header, tag), 8u);
  EXPECT_EQ(offsetof(Header, vsmmu), 16u);
  EXPECT_EQ(offsetof(Header, status), 20u);

  EXPECT_EQ(sizeof(HelloRequest), 32u);
  EXPECT_EQ(offsetof(HelloRequest, features), 16u);
  EXPECT_EQ(offsetof(HelloRequest, max_message), 24u);
  EXPECT_EQ(sizeof(HelloReply), 48u);
  EXPECT_EQ(offsetof(HelloReply, features), 8u);
  EXPECT_EQ(offsetof(HelloReply, host), 16u);
  EXPECT_EQ(offsetof(HelloReply, max_fds), 24u);
  EXPECT_EQ(offsetof(HelloReply, max_pending), 40u);

  EXPECT_EQ(sizeof(WireWishes), 20u);
  EXPECT_EQ(offsetof(WireWishes, ipa_bits), 4u);
  EXPECT_EQ(offsetof(WireWishes, eventq_log2), 16u);
  EXPECT_EQ(offsetof(WireWishes, msi), 17u);
  EXPECT_EQ(offsetof(WireWishes, stall), 18u);
  EXPECT_EQ(sizeof(CreateRequest), 52u);
  EXPECT_EQ(offsetof(CreateRequest, wishes), 8u);
  EXPECT_EQ(offsetof(CreateRequest, commands_per_access), 28u);
  EXPECT_EQ(offsetof(CreateRequest, flags), 36u);
  EXPECT_EQ(offsetof(CreateRequest, vsid), 40u);
  EXPECT_EQ(offsetof(CreateRequest, name_len), 44u);
  EXPECT_EQ(offsetof(CreateRequest, device_name_len), 48u);
  EXPECT_EQ(sizeof(CreateReply), 40u);
  EXPECT_EQ(offsetof(CreateReply, idr), 8u);
  EXPECT_EQ(offsetof(CreateReply, iidr), 32u);

  EXPECT_EQ(sizeof(DestroyRequest), 8u);
  EXPECT_EQ(sizeof(AddRegionRequest), 32u);
  EXPECT_EQ(offsetof(AddRegionRequest, gpa), 8u);
  EXPECT_EQ(offsetof(AddRegionRequest, fd_offset), 24u);
  EXPECT_EQ(sizeof(RemoveRegionRequest), 16u);
  EXPECT_EQ(sizeof(AttachRequest), 16u);
  EXPECT_EQ(sizeof(DetachRequest), 8u);
  EXPECT_EQ(sizeof(MmioReadRequest), 16u);
  EXPECT_EQ(offsetof(MmioReadRequest, offset), 8u);
  EXPECT_EQ(sizeof(MmioReadReply), 16u);
  EXPECT_EQ(sizeof(MmioWriteRequest), 24u);
  EXPECT_EQ(offsetof(MmioWriteRequest, value), 16u);
  EXPECT_EQ(sizeof(SetIrqRequest), 8u);
  EXPECT_EQ(sizeof(StatsRequest), 8u);
  EXPECT_EQ(sizeof(VsmmuStatsReply), 224u);
  EXPECT_EQ(offsetof(VsmmuStatsReply, stalls), 192u);  // appended after msi_window_faults
  EXPECT_EQ(kVsmmuStatsReplyV1Size, 160u);  // version 1's 19 counters; msi_window_base is the first appended
  EXPECT_EQ(offsetof(VsmmuStatsReply, msi_window_faults), 184u);
  EXPECT_EQ(sizeof(DaemonStatsReply), 80u);
  EXPECT_EQ(sizeof(SimDmaRequest), 32u);
  EXPECT_EQ(offsetof(SimDmaRequest, iova), 8u);
  EXPECT_EQ(offsetof(SimDmaRequest, length), 16u);
  EXPECT_EQ(offsetof(SimDmaRequest, flags), 28u);
  EXPECT_EQ(sizeof(SimDmaReply), 16u);
  EXPECT_EQ(sizeof(ErrorReply), 16u);
  EXPECT_EQ(offsetof(ErrorReply, field_len), 8u);
  // "MSI (13)", "NOTICE (14)"
  EXPECT_EQ(sizeof(MsiMessage), 24u);
  EXPECT_EQ(offsetof(MsiMessage, dropped), 20u);
  EXPECT_EQ(sizeof(NoticeMessage), 24u);
  EXPECT_EQ(offsetof(NoticeMessage, kind), 4u);
  EXPECT_EQ(offsetof(NoticeMessage, vsid), 8u);
  EXPECT_EQ(offsetof(NoticeMessage, dropped), 12u);
  EXPECT_EQ(offsetof(NoticeMessage, text_len), 16u);
  EXPECT_EQ(kMaxNoticeText, 1024u);
  // "Live migration (16-20)"
  EXPECT_EQ(sizeof(DirtyStartRequest), 8u);
  EXPECT_EQ(offsetof(DirtyStartRequest, flags), 4u);
  EXPECT_EQ(sizeof(DirtyStartReply), 20u);
  EXPECT_EQ(offsetof(DirtyStartReply, mode), 4u);
  EXPECT_EQ(offsetof(DirtyStartReply, parents), 8u);
  EXPECT_EQ(offsetof(DirtyStartReply, tracking), 12u);
  EXPECT_EQ(offsetof(DirtyStartReply, reason_len), 16u);
  EXPECT_EQ(sizeof(DirtyStopRequest), 8u);
  EXPECT_EQ(sizeof(DirtyGetRequest), 24u);
  EXPECT_EQ(offsetof(DirtyGetRequest, flags), 4u);
  EXPECT_EQ(offsetof(DirtyGetRequest, region_gpa), 8u);
  EXPECT_EQ(offsetof(DirtyGetRequest, bitmap_offset), 16u);
  EXPECT_EQ(sizeof(DirtyGetReply), 24u);
  EXPECT_EQ(offsetof(DirtyGetReply, flags), 4u);
  EXPECT_EQ(offsetof(DirtyGetReply, pages), 8u);
  EXPECT_EQ(offsetof(DirtyGetReply, dirty), 16u);
  EXPECT_EQ(sizeof(SaveStateRequest), 8u);
  EXPECT_EQ(sizeof(SaveStateReply), 16u);
  EXPECT_EQ(offsetof(SaveStateReply, state_bytes), 8u);
  EXPECT_EQ(sizeof(LoadStateRequest), 16u);
  EXPECT_EQ(offsetof(LoadStateRequest, flags), 4u);
  EXPECT_EQ(offsetof(LoadStateRequest, state_bytes), 8u);
  EXPECT_EQ(kFeatureMigration, 1u << 2);
  EXPECT_EQ(static_cast<std::uint32_t>(DirtyLogMode::hardware), 1u);
  EXPECT_EQ(static_cast<std::uint32_t>(DirtyLogMode::conservative), 2u);
  EXPECT_EQ(kDirtyGetNoClear, 1u);
  EXPECT_EQ(kDirtyConservative, 1u);
  EXPECT_EQ(kDirtyRemoved, 2u);
}

// docs/protocol.md, "Ops": every request a VMM builds with build() comes out of decode_request as it went in.
TEST(ProtocolFormat, EveryRequestBuiltWithBuildDecodesToWhatWasSent) {
  {
    EXPECT_TRUE(std::holds_alternative<DirtyStartArgs>(decode(build(request(Op::dirty_start), DirtyStartRequest{}))->args));
    EXPECT_TRUE(std::holds_alternative<DirtyStopArgs>(decode(build(request(Op::dirty_stop), DirtyStopRequest{}))->args));
    DirtyGetRequest g;
    g.flags = kDirtyGetNoClear;
    g.region_gpa = 0x40200000;
    g.bitmap_offset = 0x3000;
    auto r = decode(build(request(Op::dirty_get), g), 1);
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(args<DirtyGetArgs>(r).region_gpa, 0x40200000u);
    EXPECT_EQ(args<DirtyGetArgs>(r).bitmap_offset, 0x3000u);
    EXPECT_EQ(args<DirtyGetArgs>(r).flags, kDirtyGetNoClear);
    r = decode(build(request(Op::save_state, 4), SaveStateRequest{}), 1);
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_TRUE(std::holds_alternative<SaveStateArgs>(r->args));
    EXPECT_EQ(r->header.vsmmu, 4u);
    LoadStateRequest l;
    l.state_bytes = 1234;
    r = decode(build(request(Op::load_state, 4), l), 1);
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(args<LoadStateArgs>(r).state_bytes, 1234u);
  }
  {
    HelloRequest h;
    h.features = kFeaturePostedWrites;
    h.max_message = 8192;
    auto r = decode(build(request(Op::hello), h));
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(r->header.op, static_cast<std::uint16_t>(Op::hello));
    EXPECT_EQ(r->header.tag, kTag);
    EXPECT_EQ(args<HelloArgs>(r).fixed.features, kFeaturePostedWrites);
    EXPECT_EQ(args<HelloArgs>(r).fixed.max_message, 8192u);
  }
  {
    CreateRequest c = create_body("vsmmu0", "nic0");
    c.policy = static_cast<std::uint32_t>(Policy::per_command);
    c.flags = kCreateGbpaAbort | kCreateMsiDelivery;
    c.commands_per_access = 64;
    c.wishes.present = kWishSsidBits | kWishStall;
    c.wishes.ssid_bits = 5;
    c.wishes.stall = 1;
    auto r = decode(create_with(c, "vsmmu0", "nic0"));
    ASSERT_TRUE(r) << r.error().to_string();
    const auto& a = args<CreateArgs>(r);
    EXPECT_EQ(a.name, "vsmmu0");
    EXPECT_EQ(a.device.name, "nic0");
    EXPECT_EQ(a.device.vsid, 0x10u);
    EXPECT_EQ(a.device.fd_index, -1);
    EXPECT_EQ(a.fixed.policy, 1u);
    EXPECT_EQ(a.fixed.flags, kCreateGbpaAbort | kCreateMsiDelivery);
    EXPECT_EQ(a.fixed.commands_per_access, 64u);
    EXPECT_EQ(a.fixed.wishes.present, kWishSsidBits | kWishStall);
    EXPECT_EQ(a.fixed.wishes.ssid_bits, 5u);
    EXPECT_EQ(a.fixed.wishes.stall, 1u);
  }
  {
    auto r = decode(build(request(Op::destroy_vsmmu, 3), DestroyRequest{}));
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_TRUE(std::holds_alternative<DestroyArgs>(r->args));
    EXPECT_EQ(r->header.vsmmu, 3u);
  }
  {
    auto r = decode(add_region(0x40000000, 0x200000, 0x1000), 1);
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(args<AddRegionArgs>(r).gpa, 0x40000000u);
    EXPECT_EQ(args<AddRegionArgs>(r).length, 0x200000u);
    EXPECT_EQ(args<AddRegionArgs>(r).fd_offset, 0x1000u);
  }
  {
    RemoveRegionRequest rr;
    rr.gpa = 0x40000000;
    auto r = decode(build(request(Op::remove_region), rr));
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(args<RemoveRegionArgs>(r).gpa, 0x40000000u);
  }
  {
    auto r = decode(attach("nic1", 2));
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(args<AttachArgs>(r).device.name, "nic1");
    EXPECT_EQ(args<AttachArgs>(r).device.vsid, 0x18u);
    EXPECT_EQ(r->header.vsmmu, 2u);
  }
  {
    DetachRequest d;
    d.vsid = 0x18;
    auto r = decode(build(request(Op::detach_device, 2), d));
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(args<DetachArgs>(r).vsid, 0x18u);
  }
  {
    auto r = decode(mmio_read(0x10000 + 0xa8, 4));
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(args<MmioReadArgs>(r).offset, 0x100a8u);
    EXPECT_EQ(args<MmioReadArgs>(r).width, 4u);
  }
  {
    auto r = decode(mmio_write(0x90, 8, 0x1234567890ull));
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(args<MmioWriteArgs>(r).offset, 0x90u);
    EXPECT_EQ(args<MmioWriteArgs>(r).value, 0x1234567890ull);
    EXPECT_EQ(args<MmioWriteArgs>(r).width, 8u);
    EXPECT_FALSE(args<MmioWriteArgs>(r).posted);
  }
  {
    auto r = decode(set_irq(static_cast<std::uint32_t>(IrqLine::gerror)), 1);
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(args<SetIrqArgs>(r).line, IrqLine::gerror);
    EXPECT_TRUE(args<SetIrqArgs>(r).has_fd);
  }
  {
    auto r = decode(build(request(Op::stats), StatsRequest{}));
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_TRUE(std::holds_alternative<StatsArgs>(r->args));
  }
  {
    const auto packet = dma_write("nic0.dma", 0x8000, "abcd");  // SimDmaArgs::data points into it
    auto r = decode(packet);
    ASSERT_TRUE(r) << r.error().to_string();
    const auto& a = args<SimDmaArgs>(r);
    EXPECT_EQ(a.direction, DmaDirection::write);
    EXPECT_EQ(a.iova, 0x8000u);
    EXPECT_EQ(a.length, 4u);
    EXPECT_EQ(a.engine, "nic0.dma");
    EXPECT_EQ(as_text(a.data), "abcd");
    EXPECT_FALSE(a.ssid);
  }
}

// A body one version longer, as a newer client sends it.
struct MmioReadV2 {
  MmioReadRequest v1;
  std::uint32_t later = 0;
  std::uint32_t later2 = 0;
};

// docs/protocol.md, "Bodies and tails": a receiver that knows a shorter struct accepts a longer one when every
// byte it does not know is zero.
TEST(ProtocolFormat, ALongerBodyWhoseUnknownBytesAreZeroIsAccepted) {
  MmioReadV2 b;
  b.v1.size = sizeof b;
  b.v1.width = 8;
  b.v1.offset = 0x18;
  auto r = decode(build(request(Op::mmio_read, 1), b));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(args<MmioReadArgs>(r).offset, 0x18u);
  EXPECT_EQ(args<MmioReadArgs>(r).width, 8u);
}

// docs/protocol.md, "Bodies and tails": a non-zero byte the daemon does not know is refused with E2BIG, naming
// the byte (its offset in the body), so the client can tell which newer field this daemon lacks.
TEST(ProtocolFormat, ALongerBodyWithANonZeroUnknownByteIsRefusedNamingTheByte) {
  MmioReadV2 b;
  b.v1.size = sizeof b;
  b.v1.width = 4;
  b.later2 = 0x100;  // body byte 16 + 4 + 1
  EXPECT_TRUE(refused(decode(build(request(Op::mmio_read, 1), b)), E2BIG, "body byte 21", "must be zero"));
}

// docs/protocol.md, "Bodies and tails": version 1's fields are all required; a shorter body is refused.
TEST(ProtocolFormat, ABodyShorterThanVersion1IsRefused) {
  MmioReadRequest m;
  m.size = 12;  // the offset's high half missing
  m.width = 4;
  const auto packet = raw(request(Op::mmio_read, 1), bytes_of_struct(m).first(12));
  EXPECT_TRUE(refused(decode(packet), EINVAL, "body.size", "version 1 requires"));
  // The size field, not the bytes present, says how long the body is: a full struct that says 12 is short too.
  EXPECT_TRUE(refused(decode(build(request(Op::mmio_read, 1), m)), EINVAL, "body.size"));
}

// docs/protocol.md, "Bodies and tails": body.size cannot reach past the packet, and a body begins with its size.
TEST(ProtocolFormat, ABodySizeBeyondThePacketOrNoBodyAtAllIsRefused) {
  MmioReadRequest m;
  m.size = 64;
  m.width = 4;
  EXPECT_TRUE(refused(decode(build(request(Op::mmio_read, 1), m)), EINVAL, "body.size", "larger than"));
  EXPECT_TRUE(refused(decode(raw(request(Op::destroy_vsmmu, 1), {})), EINVAL, "body.size", "4-byte size"));
}

// docs/protocol.md, "Bodies and tails": the tail holds exactly what the body announces.
TEST(ProtocolFormat, BytesAfterTheLastAnnouncedTailPieceAreRefused) {
  const std::string_view extra = "x";
  EXPECT_TRUE(refused(decode(build(request(Op::stats), StatsRequest{}, {bytes_of(extra)})), EINVAL, "tail"));
  EXPECT_TRUE(refused(decode(build(request(Op::create_vsmmu), create_body("a", "nic0"),
                                   {bytes_of("a"), bytes_of("nic0"), bytes_of(extra)})),
                      EINVAL, "tail"));
}

// docs/protocol.md, "Header": size is the whole packet; one message per packet.
TEST(ProtocolHeader, AHeaderSizeThatIsNotThePacketsIsRefused) {
  auto packet = build(request(Op::stats), StatsRequest{});
  packet.push_back(std::byte{0});  // a packet one byte longer than its header says
  EXPECT_TRUE(refused(decode(packet), EINVAL, "header.size", "one message per packet"));
  packet.resize(packet.size() - 2);
  EXPECT_TRUE(refused(decode(packet), EINVAL, "header.size"));
}

// docs/protocol.md, "Header".
TEST(ProtocolHeader, APacketShorterThanTheHeaderIsRefused) {
  const auto packet = build(request(Op::stats), StatsRequest{});
  EXPECT_TRUE(refused(decode(std::span(packet).first(sizeof(Header) - 1)), EINVAL, "header", "24-byte header"));
  EXPECT_TRUE(refused(decode({}), EINVAL, "header"));
}

// docs/protocol.md, "Ops": a number that is no op of version 1 is refused with ENOSYS.
TEST(ProtocolHeader, AnUnknownOpIsRefusedWithEnosys) {
  for (std::uint16_t op : std::initializer_list<std::uint16_t>{0, 32, 100, 0xffff}) {
    SCOPED_TRACE(op);
    Header h;
    h.op = op;
    EXPECT_TRUE(refused(decode(build(h, StatsRequest{})), ENOSYS, "header.op", "not an op of protocol version 1"));
  }
}

// docs/protocol.md, "Ops": 15 and 21-31 are reserved; every one is answered ENOSYS, whatever its body or fds,
// so a client can probe for them. 16-20 are live migration's ("Live migration (16-20)"), 13 and 14 the daemon's
// MSI and NOTICE messages ("MSI (13)", "NOTICE (14)"), which a client may not send: EINVAL.
TEST(ProtocolHeader, EveryReservedOpIsRefusedWithEnosys) {
  for (std::uint16_t op = 13; op <= kLastOp; ++op) {
    SCOPED_TRACE(op);
    Header h;
    h.op = op;
    h.vsmmu = 1;
    const bool migration = op >= 16 && op <= 20;
    const bool msi = op == 13, notice = op == 14;
    EXPECT_EQ(op_reserved(op), !migration && !msi && !notice);
    EXPECT_EQ(op_from_daemon(op), msi || notice);
    EXPECT_TRUE(op_known(op));
    if (msi) {
      EXPECT_TRUE(refused(decode(build(h, MsiMessage{})), EINVAL, "header.op", "MSI (13) is a message the daemon sends"));
    } else if (notice) {
      EXPECT_TRUE(refused(decode(build(h, NoticeMessage{})), EINVAL, "header.op",
                          "NOTICE (14) is a message the daemon sends; a client never sends it"));
    } else if (!migration) {
      EXPECT_TRUE(refused(decode(build(h, StatsRequest{}), 1), ENOSYS, "header.op",
                          "is reserved (docs/protocol.md); this daemon does not implement it"));
    }
  }
  EXPECT_EQ(op_name(16), "DIRTY_START");
  EXPECT_EQ(op_name(20), "LOAD_STATE");
  EXPECT_EQ(op_name(14), "NOTICE");
  Header h;
  h.op = 15;
  auto r = decode(raw(h, {}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().to_string().rfind("op 15: header.op: 15 is reserved", 0), 0u)
      << r.error().to_string();
  h.op = 21;
  EXPECT_TRUE(refused(decode(raw(h, {})), ENOSYS, "header.op", "21 is reserved"));
}

// docs/protocol.md, "MSI (13)": the daemon's MSI message is unsolicited, REPLY|ASYNC with tag 0; a client takes
// nothing else as one (an error reply echoing op 13 to a client that sent it is a reply like any other).
TEST(ProtocolHeader, AnMsiMessageIsReplyAsyncWithTagZero) {
  Header h;
  h.op = static_cast<std::uint16_t>(Op::msi);
  h.flags = kFlagReply | kFlagAsync;
  h.vsmmu = 1;
  const auto good = build(h, MsiMessage{.address = 0x0809'0040, .data = 0x21});
  Packet p;
  EXPECT_FALSE(parse_header(good, false, p));
  Body<MsiMessage> body;
  ASSERT_FALSE(decode_body(p, body));
  EXPECT_EQ(body.fixed.address, 0x0809'0040U);
  EXPECT_EQ(body.fixed.data, 0x21U);
  h.tag = 7;
  auto bad = parse_header(build(h, MsiMessage{}), false, p);
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->field, "header.flags");
  h.tag = 0;
  h.flags = kFlagReply;
  EXPECT_TRUE(parse_header(build(h, MsiMessage{}), false, p));
  h.flags = kFlagReply;
  h.tag = 7;
  h.status = EINVAL;
  EXPECT_FALSE(parse_header(build(h, ErrorReply{}), false, p)) << "the refusal of a client's op 13";
}

// docs/protocol.md, "NOTICE (14)": the daemon's notice is unsolicited like MSI (REPLY|ASYNC, tag 0); its body
// gives the kind, the vSID and the length of the text that follows as its tail.
TEST(ProtocolHeader, ANoticeIsReplyAsyncWithTagZeroAndItsTextIsTheTail) {
  Header h;
  h.op = static_cast<std::uint16_t>(Op::notice);
  h.flags = kFlagReply | kFlagAsync;
  h.vsmmu = 2;
  const std::string_view text = "nic0 (vSID 0x10): DMA to 0x8000040 faulted";
  const auto good = build(h, NoticeMessage{.kind = 1, .vsid = 0x10, .text_len = static_cast<std::uint32_t>(text.size())},
                          {bytes_of(text)});
  Packet p;
  ASSERT_FALSE(parse_header(good, false, p));
  Body<NoticeMessage> body;
  ASSERT_FALSE(decode_body(p, body));
  EXPECT_EQ(body.fixed.kind, 1U);
  EXPECT_EQ(body.fixed.vsid, 0x10U);
  const std::pair<const char*, std::uint32_t> pieces[] = {{"text_len", body.fixed.text_len}};
  std::vector<std::span<const std::byte>> parts;
  ASSERT_FALSE(split_tail(p.header.op, body.tail, pieces, parts));
  EXPECT_EQ(as_text(parts[0]), text);
  h.tag = 7;
  auto bad = parse_header(build(h, NoticeMessage{}), false, p);
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->field, "header.flags");
  EXPECT_NE(bad->reason.find("NOTICE is unsolicited: REPLY|ASYNC with tag 0"), std::string::npos) << bad->reason;
  h.tag = 0;
  h.flags = kFlagReply;
  EXPECT_TRUE(parse_header(build(h, NoticeMessage{}), false, p));
}

// docs/protocol.md, "Header": flags the protocol does not define are refused, not ignored.
TEST(ProtocolHeader, UnknownFlagBitsAreRefused) {
  for (std::uint16_t flag : std::initializer_list<std::uint16_t>{1u << 3, 1u << 8, 1u << 15}) {
    SCOPED_TRACE(flag);
    EXPECT_TRUE(refused(decode(mmio_write(0, 4, 0, flag)), EINVAL, "header.flags", "unknown bits"));
  }
}

// docs/protocol.md, "Header": REPLY and ASYNC are the daemon's; status is zero in a request.
TEST(ProtocolHeader, ARequestCarryingTheDaemonsFlagsOrAStatusIsRefused) {
  EXPECT_TRUE(refused(decode(mmio_write(0, 4, 0, kFlagReply)), EINVAL, "header.flags", "daemon's flags"));
  EXPECT_TRUE(refused(decode(mmio_write(0, 4, 0, kFlagAsync)), EINVAL, "header.flags", "daemon's flags"));
  Header h = request(Op::stats);
  h.status = EIO;
  EXPECT_TRUE(refused(decode(build(h, StatsRequest{})), EINVAL, "header.status"));
}

// docs/protocol.md, "Posted MMIO writes": POSTED belongs to MMIO_WRITE alone.
TEST(ProtocolHeader, OnlyMmioWriteMayBePosted) {
  MmioReadRequest m;
  m.width = 4;
  EXPECT_TRUE(refused(decode(build(request(Op::mmio_read, 1, kFlagPosted), m)), EINVAL, "header.flags",
                      "only MMIO_WRITE"));
  EXPECT_TRUE(refused(decode(build(request(Op::stats, 0, kFlagPosted), StatsRequest{})), EINVAL, "header.flags"));
  auto r = decode(mmio_write(0x20, 4, 1, kFlagPosted));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(args<MmioWriteArgs>(r).posted);
}

// docs/protocol.md, "Versions, features and limits": nothing larger than HelloReply::max_message is taken.
TEST(ProtocolLimits, APacketLargerThanMaxMessageIsRefusedWithEmsgsize) {
  const auto packet = dma_write("nic0.dma", 0, std::string(100, 'x'));
  EXPECT_TRUE(decode(packet, 0, HostKind::sim, static_cast<std::uint32_t>(packet.size())));
  EXPECT_TRUE(refused(decode(packet, 0, HostKind::sim, static_cast<std::uint32_t>(packet.size() - 1)), EMSGSIZE,
                      "header.size", "max_message"));
}

// docs/protocol.md, "Transport" and each op's "fds": an fd where none belongs is refused (EINVAL), never kept.
TEST(ProtocolFds, AnFdWhereNoneBelongsIsRefused) {
  const std::vector<std::vector<std::byte>> none = {
      hello(),
      create(),  // the sim host names its device
      build(request(Op::destroy_vsmmu, 1), DestroyRequest{}),
      build(request(Op::remove_region), RemoveRegionRequest{}),
      attach(),  // sim host
      build(request(Op::detach_device, 1), DetachRequest{}),
      mmio_read(0, 4),
      mmio_write(0, 4, 0),
      build(request(Op::stats), StatsRequest{}),
      dma_read("nic0.dma", 0, 8),
      build(request(Op::dirty_start), DirtyStartRequest{}),
      build(request(Op::dirty_stop), DirtyStopRequest{}),
  };
  for (const auto& packet : none) {
    Packet p;
    ASSERT_FALSE(parse_header(packet, true, p));
    SCOPED_TRACE(op_name(p.header.op));
    EXPECT_TRUE(decode(packet, 0)) << decode(packet, 0).error().to_string();
    EXPECT_TRUE(refused(decode(packet, 1), EINVAL, "fds", "takes none"));
    EXPECT_TRUE(refused(decode(packet, 3), EINVAL, "fds", "3 came"));
  }
}

// docs/protocol.md, ADD_REGION, CREATE_VSMMU and ATTACH_DEVICE (kernel host): the one fd they need, missing, is
// EBADF; more than one is EINVAL.
TEST(ProtocolFds, NoFdWhereOneIsNeededIsEbadfAndTwoAreRefused) {
  EXPECT_TRUE(refused(decode(add_region(), 0), EBADF, "fds", "memfd"));
  EXPECT_TRUE(refused(decode(add_region(), 2), EINVAL, "fds", "exactly one"));
  EXPECT_TRUE(refused(decode_kernel(create("v", ""), 0), EBADF, "fds", "VFIO cdev"));
  EXPECT_TRUE(refused(decode_kernel(create("v", ""), 2), EINVAL, "fds", "exactly one"));
  EXPECT_TRUE(refused(decode_kernel(attach(""), 0), EBADF, "fds", "VFIO cdev"));
  EXPECT_TRUE(refused(decode_kernel(attach(""), 2), EINVAL, "fds"));
  EXPECT_TRUE(refused(decode(set_irq(0), 2), EINVAL, "fds", "one eventfd, or none"));
  // "Live migration (16-20)": DIRTY_GET's bitmap file, SAVE_STATE's and LOAD_STATE's state file.
  LoadStateRequest load;
  load.state_bytes = 64;
  for (const auto& packet : {build(request(Op::dirty_get), DirtyGetRequest{}),
                             build(request(Op::save_state, 1), SaveStateRequest{}),
                             build(request(Op::load_state, 1), load)}) {
    Packet p;
    ASSERT_FALSE(parse_header(packet, true, p));
    SCOPED_TRACE(op_name(p.header.op));
    EXPECT_TRUE(decode(packet, 1)) << decode(packet, 1).error().to_string();
    EXPECT_TRUE(refused(decode(packet, 0), EBADF, "fds", "SCM_RIGHTS"));
    EXPECT_TRUE(refused(decode(packet, 2), EINVAL, "fds", "exactly one"));
  }
}

// docs/protocol.md, "Errors": what the daemon refuses comes back to the client as the same errno, op, field and
// reason, with the request's tag and vSMMU; a posted write's failure also carries ASYNC.
TEST(ProtocolErrors, AnErrorReplyReadsBackAsTheRefusal) {
  const auto packet = mmio_write(0x22, 4, 0, kFlagPosted, 7);
  auto r = decode(packet);
  ASSERT_FALSE(r);
  Packet req;
  ASSERT_FALSE(parse_header(packet, true, req));
  for (std::uint16_t extra : {std::uint16_t{0}, kFlagAsync}) {
    SCOPED_TRACE(extra);
    const auto reply_bytes = build_error(req.header, r.error(), extra);
    Packet reply;
    auto bad = parse_header(reply_bytes, false, reply);
    ASSERT_FALSE(bad) << bad->to_string();
    EXPECT_EQ(reply.header.flags, kFlagReply | extra);
    EXPECT_EQ(reply.header.tag, kTag);
    EXPECT_EQ(reply.header.vsmmu, 7u);
    EXPECT_EQ(reply.header.status, EINVAL);
    const Refusal back = parse_error(reply);
    EXPECT_EQ(back.err, r.error().err);
    EXPECT_EQ(back.op, static_cast<std::uint16_t>(Op::mmio_write));
    EXPECT_EQ(back.field, "body.offset");
    EXPECT_EQ(back.reason, r.error().reason);
    EXPECT_EQ(back.to_string(), r.error().to_string());
  }
  // A reply must say REPLY; a client refuses one that does not.
  Packet p;
  EXPECT_TRUE(parse_header(build(request(Op::stats), ErrorReply{}), false, p));
}

// docs/protocol.md, "Errors" and "Versions, features and limits": a client that tries an op this daemon does not
// know (a newer one) reads the ENOSYS reply, which echoes that op.
TEST(ProtocolErrors, TheEnosysReplyToAnUnknownOpReachesTheClient) {
  for (std::uint16_t op : std::initializer_list<std::uint16_t>{0, 40, 0xffff}) {
    SCOPED_TRACE(op);
    Header h = request(Op::stats);
    h.op = op;
    auto r = decode(build(h, StatsRequest{}));
    ASSERT_FALSE(r);
    const auto reply_bytes = build_error(h, r.error());
    Packet reply;
    auto bad = parse_header(reply_bytes, false, reply);
    ASSERT_FALSE(bad) << bad->to_string();
    const Refusal back = parse_error(reply);
    EXPECT_EQ(back.err, ENOSYS);
    EXPECT_EQ(back.op, op);
    EXPECT_EQ(back.field, "header.op");
  }
  // A successful reply still names an op of version 1.
  Header ok = request(Op::stats, 0, kFlagReply);
  ok.op = 40;
  Packet p;
  EXPECT_TRUE(parse_header(build(ok, StatsRequest{}), false, p));
}

// docs/protocol.md, "Errors": a client never trusts an error reply's lengths.
TEST(ProtocolErrors, AMalformedErrorReplyIsReportedAsSuch) {
  Header h = request(Op::stats, 0, kFlagReply);
  h.status = ENOENT;
  ErrorReply e;
  e.op = h.op;
  e.field_len = 100;  // more than follows
  const auto bytes = build(h, e, {bytes_of("body")});
  Packet reply;
  ASSERT_FALSE(parse_header(bytes, false, reply));
  const Refusal back = parse_error(reply);
  EXPECT_EQ(back.err, ENOENT);
  EXPECT_EQ(back.field, "reply");
  EXPECT_NE(back.reason.find("malformed"), std::string::npos) << back.reason;
}

}  // namespace
}  // namespace vsmmu::service::test
