// The client side of the vsmmud protocol (service/protocol.hpp) against a fake daemon: a thread on the other
// end of a socketpair(AF_UNIX, SOCK_SEQPACKET) that checks each request as the daemon would (parse_header from a
// client, the body under the zero-extension rule) and answers what each test scripts.
#include <gtest/gtest.h>

#include <poll.h>

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <future>
#include <thread>

#include "service/client/client.hpp"
#include "service/client/remote_vsmmu.hpp"
#include "service/client/vsmmu_client.h"
#include "service/packet_io.hpp"

namespace vsmmu::service {
namespace {

using namespace std::chrono_literals;
using host::UniqueFd;

// One request as the fake daemon received it.
struct Received {
  Header header;
  std::vector<std::byte> bytes;
  std::vector<UniqueFd> fds;
  Packet packet() const {
    Packet p;
    EXPECT_FALSE(parse_header(bytes, true, p).has_value());
    return p;
  }
  template <class T>
  T body() const {
    Body<T> b;
    EXPECT_FALSE(decode_body(packet(), b).has_value());
    return b.fixed;
  }
};

class FakeDaemon {
 public:
  explicit FakeDaemon(int fd) : fd_(fd) {
    const timeval tv{5, 0};  // a test that goes wrong fails, it does not hang
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  Received receive() {
    std::vector<std::byte> buffer(4096);
    auto r = receive_packet(fd_, buffer, 4);
    EXPECT_TRUE(r.has_value()) << r.error();
    Received got;
    if (!r || r->size == 0) return got;
    buffer.resize(r->size);
    Packet p;
    const auto bad = parse_header(buffer, true, p);
    EXPECT_FALSE(bad.has_value()) << bad->to_string();
    got.header = p.header;
    got.bytes = std::move(buffer);
    got.fds = std::move(r->fds);
    return got;
  }
  Received expect(Op op) {
    Received got = receive();
    EXPECT_EQ(got.header.op, static_cast<std::uint16_t>(op)) << op_name(got.header.op);
    return got;
  }

  template <class T>
  void reply(const Received& request, const T& body, std::initializer_list<std::span<const std::byte>> tail = {}) {
    Header h = request.header;
    h.flags = kFlagReply;
    send(build(h, body, tail));
  }
  void refuse(const Received& request, int err, std::string field, std::string reason, std::uint16_t flags = 0) {
    send(build_error(request.header, Refusal{err, request.header.op, std::move(field), std::move(reason)}, flags));
  }
  void send(std::span<const std::byte> packet) {
    auto s = send_packet(fd_, packet);
    EXPECT_TRUE(s.has_value()) << s.error();
  }

  void answer_hello(std::uint32_t max_message = 4096) {
    const Received hello = expect(Op::hello);
    const auto offer = hello.body<HelloRequest>();
    EXPECT_EQ(offer.magic, kMagic);
    HelloReply reply;
    reply.features = offer.features & kFeaturePostedWrites;
    reply.host = static_cast<std::uint32_t>(HostKind::sim);
    reply.max_message = max_message;
    reply.max_fds = 1;
    reply.max_vsmmus = 4;
    this->reply(hello, reply);
  }
  // Answers an MMIO_READ with `value`, checking what it asks for.
  void answer_read(std::uint64_t value, std::uint64_t offset) {
    const Received read = expect(Op::mmio_read);
    EXPECT_EQ(read.body<MmioReadRequest>().offset, offset);
    MmioReadReply reply;
    reply.value = value;
    this->reply(read, reply);
  }

 private:
  int fd_;
};

// The daemon's MSI message (docs/protocol.md "MSI (13)") of `vsmmu` to an ITS doorbell with `data`.
std::vector<std::byte> msi_packet(std::uint32_t vsmmu, std::uint32_t data) {
  Header h;
  h.op = static_cast<std::uint16_t>(Op::msi);
  h.flags = kFlagReply | kFlagAsync;
  h.vsmmu = vsmmu;
  return build(h, MsiMessage{.address = 0x0809'0040, .data = data});
}

// The daemon's NOTICE (docs/protocol.md "NOTICE (14)") of `vsmmu` about `vsid`, with `dropped` before it.
std::vector<std::byte> notice_packet(std::uint32_t vsmmu, std::uint32_t vsid, std::string_view text,
                                     std::uint32_t dropped = 0) {
  Header h;
  h.op = static_cast<std::uint16_t>(Op::notice);
  h.flags = kFlagReply | kFlagAsync;
  h.vsmmu = vsmmu;
  return build(h,
               NoticeMessage{.kind = static_cast<std::uint32_t>(nesting::NoticeKind::msi_window_fault),
                             .vsid = vsid, .dropped = dropped, .text_len = static_cast<std::uint32_t>(text.size())},
               {bytes_of(text)});
}

// A client on one end of a socketpair, the fake daemon running `script` on the other.
class ClientTest : public ::testing::Test {
 protected:
  void start(std::function<void(FakeDaemon&)> script) {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds), 0);
    client_end_ = UniqueFd(fds[0]);
    daemon_end_ = UniqueFd(fds[1]);
    daemon_ = std::thread([this, script = std::move(script)] {
      FakeDaemon daemon(daemon_end_.get());
      script(daemon);
      if (close_when_done_) daemon_end_.reset();
    });
  }
  std::unique_ptr<Client> connect(std::chrono::milliseconds timeout = {}) {
    auto c = Client::adopt(std::move(client_end_), Client::default_offer(), timeout);
    EXPECT_TRUE(c.has_value()) << c.error();
    return c ? std::move(*c) : nullptr;
  }
  void TearDown() override {
    if (daemon_.joinable()) daemon_.join();
  }
  // A client that read a register of vSMMU 3 while the daemon sent `unsolicited` before the read's reply.
  std::unique_ptr<Client> read_amid(std::vector<std::vector<std::byte>> unsolicited) {
    start([unsolicited = std::move(unsolicited)](FakeDaemon& d) {
      d.answer_hello();
      const Received read = d.expect(Op::mmio_read);
      for (const auto& p : unsolicited) d.send(p);
      MmioReadReply reply;
      reply.value = 7;
      d.reply(read, reply);
    });
    auto client = connect();
    if (!client) return nullptr;
    auto r = client->mmio_read(3, 0x9c, 4);
    EXPECT_TRUE(r.has_value()) << r.error();
    EXPECT_EQ(r.value_or(0), 7u) << "the reply, not a message sent before it";
    return client;
  }

  UniqueFd client_end_, daemon_end_;
  std::thread daemon_;
  bool close_when_done_ = false;
};

TEST_F(ClientTest, HelloOffersEveryKnownFeatureAndKeepsTheDaemonsAnswer) {
  start([](FakeDaemon& d) {
    const Received hello = d.expect(Op::hello);
    const auto offer = hello.body<HelloRequest>();
    EXPECT_EQ(offer.version_min, kProtocolVersion);
    EXPECT_EQ(offer.version_max, kProtocolVersion);
    EXPECT_EQ(offer.features, kKnownFeatures);
    EXPECT_EQ(hello.header.vsmmu, 0u);
    EXPECT_NE(hello.header.tag, 0u);
    HelloReply reply;
    reply.features = kFeaturePostedWrites;
    reply.host = static_cast<std::uint32_t>(HostKind::kernel);
    reply.max_message = 8192;
    reply.max_regions = 3;
    d.reply(hello, reply);
  });
  auto client = connect();
  ASSERT_TRUE(client);
  EXPECT_EQ(client->hello().host, static_cast<std::uint32_t>(HostKind::kernel));
  EXPECT_EQ(client->hello().max_message, 8192u);
  EXPECT_EQ(client->hello().max_regions, 3u);
  EXPECT_TRUE(client->posted_writes());
}

TEST_F(ClientTest, AHelloReplyOutsideTheOfferIsEproto) {
  start([](FakeDaemon& d) {
    const Received hello = d.expect(Op::hello);
    HelloReply reply;
    reply.version = 2;  // not offered
    reply.max_message = 4096;
    d.reply(hello, reply);
  });
  auto client = Client::adopt(std::move(client_end_));
  ASSERT_FALSE(client.has_value());
  EXPECT_EQ(client.error().err, EPROTO);
  EXPECT_EQ(client.error().where, "vsmmud HELLO");
  EXPECT_NE(client.error().message.find("version 2"), std::string::npos) << client.error();
}

TEST_F(ClientTest, ARefusalIsAnErrorNamingTheOpTheFieldAndTheReason) {
  start([](FakeDaemon& d) {
    d.answer_hello();
    const Received read = d.expect(Op::mmio_read);
    d.refuse(read, EINVAL, "offset", "0x9a is not aligned to the access width 4");
  });
  auto client = connect();
  ASSERT_TRUE(client);
  auto r = client->mmio_read(1, 0x9a, 4);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().err, EINVAL);
  EXPECT_EQ(r.error().where, "vsmmud MMIO_READ");
  EXPECT_EQ(r.error().message, "offset: 0x9a is not aligned to the access width 4");
  EXPECT_EQ(r.error().to_string(), "vsmmud MMIO_READ: offset: 0x9a is not aligned to the access width 4 (EINVAL, errno 22)");
}

TEST_F(ClientTest, MmioReadSendsHandleOffsetWidthAndReturnsTheValue) {
  start([](FakeDaemon& d) {
    d.answer_hello();
    const Received read = d.expect(Op::mmio_read);
    EXPECT_EQ(read.header.vsmmu, 7u);
    EXPECT_EQ(read.header.flags, 0u);
    EXPECT_EQ(read.body<MmioReadRequest>().width, 8u);
    EXPECT_EQ(read.body<MmioReadRequest>().offset, 0x90u);  // CMDQ_BASE (IHI 0070 6.3.25)
    EXPECT_TRUE(read.fds.empty());
    MmioReadReply reply;
    reply.value = 0x1122334455667788;
    d.reply(read, reply);
  });
  auto client = connect();
  ASSERT_TRUE(client);
  auto r = client->mmio_read(7, 0x90, 8);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(*r, 0x1122334455667788u);
}

TEST_F(ClientTest, APostedWritesFailureIsKeptAndNeverTakenAsTheNextReply) {
  start([](FakeDaemon& d) {
    d.answer_hello();
    const Received write = d.expect(Op::mmio_write);
    EXPECT_EQ(write.header.flags, kFlagPosted);
    EXPECT_EQ(write.body<MmioWriteRequest>().value, 0x5u);
    const Received read = d.expect(Op::mmio_read);
    // The write's failure comes first, then the read's answer.
    d.refuse(write, EFAULT, "CMDQ_BASE", "outside guest RAM", kFlagAsync);
    MmioReadReply reply;
    reply.value = 42;
    d.reply(read, reply);
  });
  auto client = connect();
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->mmio_write(3, 0x98, 0x5, 4).has_value());
  auto r = client->mmio_read(3, 0x9c, 4);
  ASSERT_TRUE(r.has_value()) << r.error();
  EXPECT_EQ(*r, 42u);
  const PostedFailures failures = client->take_posted_failures();
  ASSERT_EQ(failures.kept.size(), 1u);
  EXPECT_EQ(failures.dropped, 0u);
  EXPECT_EQ(failures.kept[0].vsmmu, 3u);
  EXPECT_EQ(failures.kept[0].error.where, "vsmmud MMIO_WRITE");
  EXPECT_EQ(failures.kept[0].error.message, "CMDQ_BASE: outside guest RAM");
  EXPECT_EQ(failures.kept[0].error.err, EFAULT);
  EXPECT_TRUE(client->take_posted_failures().kept.empty());
}

// docs/protocol.md "MSI (13)": MSI messages (REPLY|ASYNC, tag 0) met while awaiting a reply are kept, never taken
// for the reply, and handed out by take_msis per vSMMU, oldest first, with the address and data they carry.
TEST_F(ClientTest, MsiMessagesAreKeptAndTakenPerVsmmu) {
  auto client = read_amid({msi_packet(3, 1), msi_packet(4, 2), msi_packet(3, 3)});
  ASSERT_TRUE(client);
  const auto three = client->take_msis(3);
  ASSERT_EQ(three.size(), 2u);
  EXPECT_EQ(three[0].data, 1u);
  EXPECT_EQ(three[1].data, 3u);
  EXPECT_EQ(three[0].address, 0x0809'0040u);
  const auto rest = client->take_msis();
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].vsmmu, 4u);
  EXPECT_EQ(rest[0].data, 2u);
  EXPECT_TRUE(client->take_msis().empty());
  EXPECT_TRUE(client->take_posted_failures().kept.empty()) << "an MSI is no posted failure";
}

// docs/protocol.md "NOTICE (14)": notices met while awaiting a reply are kept beside the MSIs (each in its own
// queue), never taken for the reply, and handed out per vSMMU with their kind, vSID and text.
TEST_F(ClientTest, NoticesAreKeptBesideMsisAndTakenPerVsmmu) {
  auto client = read_amid({notice_packet(3, 0x10, "nic0 (vSID 0x10): DMA to 0x8000040 faulted"), msi_packet(3, 1),
                           notice_packet(4, 0x20, "nic1 (vSID 0x20): DMA to 0x8000080 faulted")});
  ASSERT_TRUE(client);
  const auto three = client->take_notices(3);
  ASSERT_EQ(three.size(), 1u);
  EXPECT_EQ(three[0].vsmmu, 3u);
  EXPECT_EQ(three[0].notice.kind, nesting::NoticeKind::msi_window_fault);
  EXPECT_EQ(three[0].notice.vsid, 0x10u);
  EXPECT_EQ(three[0].notice.text, "nic0 (vSID 0x10): DMA to 0x8000040 faulted");
  EXPECT_EQ(client->take_msis().size(), 1u) << "the MSI between the notices is kept as an MSI";
  const auto rest = client->take_notices();
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].notice.vsid, 0x20u);
  EXPECT_TRUE(client->take_notices().empty());
}

// Notices waiting on the socket are read by take_notices without a request; past kMaxKeptNotices they are dropped
// and counted, with those the daemon dropped, in the next one kept. A notice whose text is longer than it says,
// or beyond kMaxNoticeText, is dropped (logged), not kept half-read.
TEST_F(ClientTest, NoticesWaitingAreTakenWithoutARequestBoundedAndChecked) {
  std::promise<void> sent, taken, sent_last;
  start([&](FakeDaemon& d) {
    d.answer_hello();
    Header h;
    h.op = static_cast<std::uint16_t>(Op::notice);
    h.flags = kFlagReply | kFlagAsync;
    h.vsmmu = 1;
    d.send(build(h, NoticeMessage{.text_len = 2}, {bytes_of("abc")}));  // the tail is longer than text_len
    const std::string long_text(kMaxNoticeText + 1, 'x');
    d.send(build(h, NoticeMessage{.text_len = kMaxNoticeText + 1}, {bytes_of(long_text)}));
    for (std::size_t i = 0; i < Client::kMaxKeptNotices + 3; ++i) d.send(notice_packet(1, 0x10, "n", 1));
    sent.set_value();
    taken.get_future().wait();
    d.send(notice_packet(1, 0x10, "last"));
    sent_last.set_value();
  });
  auto client = connect();
  ASSERT_TRUE(client);
  // take_notices(1, 0) reads what waits and takes nothing: the socket never fills while the daemon sends.
  for (auto done = sent.get_future(); done.wait_for(10ms) != std::future_status::ready;) (void)client->take_notices(1, 0);
  const auto kept = client->take_notices(1);
  ASSERT_EQ(kept.size(), Client::kMaxKeptNotices) << "the two malformed ones dropped, the rest bounded";
  EXPECT_EQ(kept[0].dropped, 1u) << "the daemon's own count";
  EXPECT_EQ(kept[0].notice.text, "n");
  taken.set_value();
  sent_last.get_future().wait();
  const auto last = client->take_notices();
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].notice.text, "last");
  EXPECT_EQ(last[0].dropped, 6u) << "the 3 the client dropped, each with the daemon's 1";
}

TEST_F(ClientTest, PostedFailuresWaitingOnTheSocketAreTakenWithoutARequestAndBounded) {
  std::promise<void> sent;
  start([&sent](FakeDaemon& d) {
    d.answer_hello();
    const Received write = d.expect(Op::mmio_write);
    for (std::size_t i = 0; i < Client::kMaxKeptFailures + 6; ++i) d.refuse(write, EINVAL, "value", "bad", kFlagAsync);
    sent.set_value();
  });
  auto client = connect();
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->mmio_write(1, 0x20, 0, 4).has_value());
  sent.get_future().wait();
  const PostedFailures failures = client->take_posted_failures();
  EXPECT_EQ(failures.kept.size(), Client::kMaxKeptFailures);
  EXPECT_EQ(failures.dropped, 6u);
}

TEST_F(ClientTest, WritesAreNotPostedWhenTheDaemonDidNotOfferIt) {
  start([](FakeDaemon& d) {
    const Received hello = d.expect(Op::hello);
    HelloReply reply;
    reply.max_message = 4096;  // no kFeaturePostedWrites
    d.reply(hello, reply);
    const Received write = d.expect(Op::mmio_write);
    EXPECT_EQ(write.header.flags, 0u);
    d.reply(write, std::uint32_t{4});  // a reply with nothing but its size
  });
  auto client = connect();
  ASSERT_TRUE(client);
  EXPECT_FALSE(client->posted_writes());
  auto w = client->mmio_write(1, 0x20, 0, 4);
  EXPECT_TRUE(w.has_value()) << w.error();
}

TEST_F(ClientTest, NoAnswerWithinTheTimeoutIsEtimedoutAndTheLateReplyIsDropped) {
  std::promise<void> timed_out;
  start([&timed_out](FakeDaemon& d) {
    d.answer_hello();
    const Received first = d.expect(Op::mmio_read);
    timed_out.get_future().wait_for(10s);
    MmioReadReply late;
    late.value = 1;
    d.reply(first, late);
    d.answer_read(2, 0x24);
  });
  auto client = connect(100ms);
  ASSERT_TRUE(client);
  auto r = client->mmio_read(1, 0x20, 4);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().err, ETIMEDOUT);
  EXPECT_EQ(r.error().where, "vsmmud MMIO_READ");
  EXPECT_NE(r.error().message.find("no reply to request"), std::string::npos) << r.error();
  timed_out.set_value();
  auto second = client->mmio_read(1, 0x24, 4);
  ASSERT_TRUE(second.has_value()) << second.error();
  EXPECT_EQ(*second, 2u);
}

TEST_F(ClientTest, ADaemonThatClosedIsAnErrorNotASignal) {
  close_when_done_ = true;
  start([](FakeDaemon& d) { d.answer_hello(); });
  auto client = connect();
  ASSERT_TRUE(client);
  daemon_.join();
  for (int i = 0; i < 2; ++i) {  // the first finds the connection closed, the second cannot even send
    auto r = client->mmio_read(1, 0, 4);
    ASSERT_FALSE(r.has_value());
    EXPECT_TRUE(r.error().err == EPIPE || r.error().err == ECONNRESET) << r.error();
    EXPECT_EQ(r.error().where, "vsmmud MMIO_READ");
  }
}

TEST_F(ClientTest, AReplyThatDoesNotParseIsEproto) {
  start([](FakeDaemon& d) {
    d.answer_hello();
    const Received read = d.expect(Op::mmio_read);
    d.reply(read, std::uint32_t{8});  // an MmioReadReply is 16 bytes
  });
  auto client = connect();
  ASSERT_TRUE(client);
  auto r = client->mmio_read(1, 0, 4);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().err, EPROTO);
  EXPECT_NE(r.error().message.find("body.size"), std::string::npos) << r.error();
}

TEST_F(ClientTest, CreateCarriesTheNamesAsTheTailAndADeviceFdBesideIt) {
  start([](FakeDaemon& d) {
    d.answer_hello();
    const Received create = d.expect(Op::create_vsmmu);
    const auto req = create.body<CreateRequest>();
    EXPECT_EQ(req.vsid, 0x10u);
    EXPECT_EQ(req.flags, kCreateGbpaAbort | kCreateMsiDelivery);
    EXPECT_EQ(req.wishes.present, kWishSidBits | kWishStall);
    EXPECT_EQ(req.wishes.sid_bits, 8u);
    EXPECT_EQ(req.wishes.stall, 0u);
    Body<CreateRequest> b;
    ASSERT_FALSE(decode_body(create.packet(), b).has_value());
    EXPECT_EQ(as_text(b.tail), "smmu0");  // the vSMMU's name; no device name: the fd names the device
    EXPECT_EQ(create.fds.size(), 1u);
    CreateReply reply;
    reply.handle = 9;
    Header h = create.header;
    h.flags = kFlagReply;
    h.vsmmu = 9;
    d.send(build(h, reply));
  });
  auto client = connect();
  ASSERT_TRUE(client);
  VsmmuOptions options;
  options.name = "smmu0";
  options.gbpa_abort = true;
  options.msi_delivery = true;
  options.wishes.present = kWishSidBits | kWishStall;  // stall stated off
  options.wishes.sid_bits = 8;
  UniqueFd device(::eventfd(0, EFD_CLOEXEC));  // any fd stands for a VFIO cdev here
  auto created = client->create_vsmmu(options, RemoteDevice{0x10, {}, device.get()});
  ASSERT_TRUE(created.has_value()) << created.error();
  EXPECT_EQ(created->handle, 9u);
}

TEST_F(ClientTest, SimDmaCarriesTheEngineAndDataAndReturnsTheBytesRead) {
  start([](FakeDaemon& d) {
    d.answer_hello();
    const Received write = d.expect(Op::sim_dma);
    Body<SimDmaRequest> w;
    ASSERT_FALSE(decode_body(write.packet(), w).has_value());
    EXPECT_EQ(w.fixed.direction, static_cast<std::uint32_t>(DmaDirection::write));
    EXPECT_EQ(w.fixed.length, 3u);
    EXPECT_EQ(w.fixed.flags, kDmaSsidValid);
    EXPECT_EQ(w.fixed.ssid, 2u);
    EXPECT_EQ(as_text(w.tail), "nic0.dmaabc");  // the engine's name, then the data
    SimDmaReply wrote;
    wrote.bytes = 3;
    d.reply(write, wrote);

    const Received read = d.expect(Op::sim_dma);
    EXPECT_EQ(read.body<SimDmaRequest>().length, 8u);
    SimDmaReply faulted;
    faulted.faulted = 1;
    faulted.bytes = 2;  // two bytes landed before the fault
    d.reply(read, faulted, {bytes_of("xy")});

    const Received liar = d.expect(Op::sim_dma);
    SimDmaReply wrong;
    wrong.bytes = 4;
    d.reply(liar, wrong, {bytes_of("xy")});  // says 4, carries 2
  });
  auto client = connect();
  ASSERT_TRUE(client);
  const std::string data = "abc";
  SimDma dma;
  dma.engine = "nic0.dma";
  dma.iova = 0x1000;
  dma.data = bytes_of(data);
  dma.ssid = 2;
  auto wrote = client->sim_dma(dma);
  ASSERT_TRUE(wrote.has_value()) << wrote.error();
  EXPECT_EQ(wrote->reply.bytes, 3u);
  EXPECT_TRUE(wrote->data.empty());

  dma.direction = DmaDirection::read;
  dma.read_length = 8;
  dma.ssid.reset();
  auto read = client->sim_dma(dma);
  ASSERT_TRUE(read.has_value()) << read.error();
  EXPECT_EQ(read->reply.faulted, 1u);
  EXPECT_EQ(as_text(read->data), "xy");

  auto liar = client->sim_dma(dma);
  ASSERT_FALSE(liar.has_value());
  EXPECT_EQ(liar.error().err, EPROTO);
}

// RemoteVsmmu: CREATE, SET_IRQ for eventq and gerror with an eventfd each, the ID registers from CREATE's reply,
// the stats field by field, an interrupt the daemon signals reaching the handler, DESTROY when it goes.
TEST_F(ClientTest, RemoteVsmmuIsAVsmmuEndpointOverTheDaemon) {
  std::promise<void> signalled;
  start([&signalled](FakeDaemon& d) {
    d.answer_hello();
    const Received create = d.expect(Op::create_vsmmu);
    CreateReply reply;
    reply.handle = 5;
    reply.idr[0] = 0x0800'0002;  // S1P (IHI 0070 6.3.1)
    reply.idr[1] = 0x0073'0010;
    reply.idr[5] = 0x0000'0055;
    reply.iidr = 0x43b;
    reply.aidr = 0x2;
    Header h = create.header;
    h.flags = kFlagReply;
    h.vsmmu = 5;
    d.send(build(h, reply));
    std::vector<UniqueFd> irq_fds;
    for (const IrqLine line : {IrqLine::eventq, IrqLine::gerror}) {
      Received set = d.expect(Op::set_irq);
      EXPECT_EQ(set.header.vsmmu, 5u);
      EXPECT_EQ(set.body<SetIrqRequest>().line, static_cast<std::uint32_t>(line));
      EXPECT_EQ(set.fds.size(), 1u);
      if (!set.fds.empty()) irq_fds.push_back(std::move(set.fds[0]));
      d.reply(set, std::uint32_t{4});
    }
    // The eventq interrupt, as the daemon signals it.
    const std::uint64_t one = 1;
    if (!irq_fds.empty()) {
      EXPECT_EQ(::write(irq_fds[0].get(), &one, sizeof one), 8);
    }
    signalled.set_value();
    const Received stats = d.expect(Op::stats);
    EXPECT_EQ(stats.header.vsmmu, 5u);
    VsmmuStatsReply figures;
    figures.commands = 12;
    figures.syncs = 3;
    figures.host_time_ns = 1500;
    figures.host_objects = 4;
    d.reply(stats, figures);
    const Received destroy = d.expect(Op::destroy_vsmmu);
    EXPECT_EQ(destroy.header.vsmmu, 5u);
    d.reply(destroy, std::uint32_t{4});
  });
  auto client = connect();
  ASSERT_TRUE(client);
  auto vsmmu = RemoteVsmmu::create(*client, VsmmuOptions{}, RemoteDevice{0x10, "nic0", -1});
  ASSERT_TRUE(vsmmu.has_value()) << vsmmu.error();
  nesting::VsmmuEndpoint& endpoint = **vsmmu;
  EXPECT_EQ(endpoint.id_registers().idr0.value(), 0x0800'0002u);
  EXPECT_TRUE(endpoint.id_registers().idr0.get(smmu::Idr0::S1P));
  EXPECT_EQ(endpoint.id_registers().idr1.value(), 0x0073'0010u);
  EXPECT_EQ(endpoint.id_registers().idr5.value(), 0x55u);
  EXPECT_EQ(endpoint.id_registers().iidr.value(), 0x43bu);
  EXPECT_EQ(endpoint.id_registers().aidr.value(), 0x2u);
  ASSERT_EQ(endpoint.event_fds().size(), 2u);
  EXPECT_EQ((*vsmmu)->irq_fd(smmu::Irq::eventq), endpoint.event_fds()[0]);
  EXPECT_EQ((*vsmmu)->irq_fd(smmu::Irq::cmd_sync), -1);

  int eventq_irqs = 0, gerror_irqs = 0;
  (*vsmmu)->set_irq_handler(smmu::Irq::eventq, [&] { ++eventq_irqs; });
  (*vsmmu)->set_irq_handler(smmu::Irq::gerror, [&] { ++gerror_irqs; });
  signalled.get_future().wait();
  auto processed = endpoint.process_events();
  ASSERT_TRUE(processed.has_value()) << processed.error();
  EXPECT_EQ(*processed, 0u);
  EXPECT_EQ(eventq_irqs, 1);
  EXPECT_EQ(gerror_irqs, 0);

  const nesting::VirtualSmmuStats stats = endpoint.stats();
  EXPECT_EQ(stats.commands, 12u);
  EXPECT_EQ(stats.syncs, 3u);
  EXPECT_EQ(stats.host_time, std::chrono::nanoseconds(1500));
  vsmmu->reset();  // DESTROY_VSMMU
}

// docs/protocol.md "Live migration (16-20)": each op carries its one fd (the VMM's bitmap or state file, the
// daemon's own copy of it), and its reply reads back into what the VMM uses.
TEST_F(ClientTest, MigrationOpsCarryTheirFileAndDecodeTheirReplies) {
  const std::string reason = "physical SMMU 0 cannot track dirty pages";
  const std::vector<std::byte> saved = {std::byte{'V'}, std::byte{'S'}, std::byte{'M'}, std::byte{'M'}, std::byte{'U'}};
  start([&](FakeDaemon& d) {
    d.answer_hello();
    const Received start_req = d.expect(Op::dirty_start);
    EXPECT_EQ(start_req.header.vsmmu, 0u);
    EXPECT_TRUE(start_req.fds.empty());
    DirtyStartReply started;
    started.mode = static_cast<std::uint32_t>(DirtyLogMode::conservative);
    started.parents = 2;
    started.tracking = 1;
    started.reason_len = static_cast<std::uint32_t>(reason.size());
    d.reply(start_req, started, {bytes_of(reason)});

    const Received get = d.expect(Op::dirty_get);
    const auto g = get.body<DirtyGetRequest>();
    EXPECT_EQ(g.region_gpa, 0x4010'0000u);
    EXPECT_EQ(g.bitmap_offset, 0x2000u);
    EXPECT_EQ(g.flags, kDirtyGetNoClear);
    EXPECT_EQ(get.fds.size(), 1u);
    if (!get.fds.empty()) {
      EXPECT_EQ(::pwrite(get.fds[0].get(), "\x05", 1, 0x2000), 1);  // pages 0 and 2
    }
    DirtyGetReply got;
    got.pages = 256;
    got.dirty = 2;
    got.flags = kDirtyRemoved;
    d.reply(get, got);

    const Received lying = d.expect(Op::dirty_start);
    DirtyStartReply bad;
    bad.mode = static_cast<std::uint32_t>(DirtyLogMode::hardware);
    bad.reason_len = 9;  // no reason follows
    d.reply(lying, bad);

    const Received save = d.expect(Op::save_state);
    EXPECT_EQ(save.header.vsmmu, 3u);
    EXPECT_EQ(save.fds.size(), 1u);
    if (!save.fds.empty()) {
      EXPECT_EQ(::ftruncate(save.fds[0].get(), static_cast<off_t>(saved.size())), 0);
      EXPECT_EQ(::pwrite(save.fds[0].get(), saved.data(), saved.size(), 0), static_cast<ssize_t>(saved.size()));
    }
    SaveStateReply state;
    state.state_bytes = saved.size();
    d.reply(save, state);

    const Received load = d.expect(Op::load_state);
    EXPECT_EQ(load.header.vsmmu, 4u);
    EXPECT_EQ(load.body<LoadStateRequest>().state_bytes, saved.size());
    std::vector<std::byte> read(saved.size());
    EXPECT_EQ(load.fds.size(), 1u);
    if (!load.fds.empty()) {
      EXPECT_EQ(::pread(load.fds[0].get(), read.data(), read.size(), 0), static_cast<ssize_t>(read.size()));
    }
    EXPECT_EQ(read, saved);
    d.reply(load, EmptyReply{});

    d.refuse(d.expect(Op::dirty_stop), EALREADY, "dirty", "dirty tracking is already off");
  });
  auto client = connect();
  ASSERT_TRUE(client);
  auto started = client->dirty_start();
  ASSERT_TRUE(started) << started.error();
  EXPECT_EQ(started->mode, DirtyLogMode::conservative);
  EXPECT_EQ(started->reason, reason);
  EXPECT_EQ(started->parents, 2u);
  EXPECT_EQ(started->tracking, 1u);

  UniqueFd bitmap(::memfd_create("bitmap", MFD_CLOEXEC));
  ASSERT_EQ(::ftruncate(bitmap.get(), 0x3000), 0);
  auto round = client->dirty_get(0x4010'0000, bitmap.get(), 0x2000, kDirtyGetNoClear);
  ASSERT_TRUE(round) << round.error();
  EXPECT_EQ(round->pages, 256u);
  EXPECT_EQ(round->dirty, 2u);
  EXPECT_TRUE(round->removed);
  EXPECT_FALSE(round->conservative);
  char bits = 0;
  ASSERT_EQ(::pread(bitmap.get(), &bits, 1, 0x2000), 1);
  EXPECT_EQ(bits, 0x05) << "the daemon wrote into the VMM's own file";

  auto lying = client->dirty_start();
  ASSERT_FALSE(lying);
  EXPECT_EQ(lying.error().err, EPROTO) << lying.error();

  auto state = client->save_state(3);
  ASSERT_TRUE(state) << state.error();
  EXPECT_EQ(*state, saved);
  auto loaded = client->load_state(4, saved);
  EXPECT_TRUE(loaded) << loaded.error();
  auto stopped = client->dirty_stop();
  ASSERT_FALSE(stopped);
  EXPECT_EQ(stopped.error().err, EALREADY);
  EXPECT_EQ(stopped.error().to_string(), "vsmmud DIRTY_STOP: dirty: dirty tracking is already off (EALREADY, errno 114)");
}

// A listening socket in a fresh directory, for the C API's connect-by-path.
struct ListeningSocket {
  ListeningSocket() {
    EXPECT_NE(::mkdtemp(dir), nullptr);
    path = std::string(dir) + "/vsmmud.sock";
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(::bind(listener.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listener.get(), 1), 0);
  }
  void remove() {
    ::unlink(path.c_str());
    ::rmdir(dir);
  }
  char dir[32] = "/tmp/vsmmu-client-test-XXXXXX";
  std::string path;
  UniqueFd listener{::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)};
};

// The C API over a real listening socket: connect by path, the daemon's info, a refusal's text, close.
TEST(ClientCApi, ConnectsByPathAndReportsRefusalsAsNegativeErrnoWithText) {
  ListeningSocket socket;
  const std::string& path = socket.path;
  UniqueFd& listener = socket.listener;
  std::thread daemon([&listener] {
    UniqueFd connection(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    FakeDaemon d(connection.get());
    d.answer_hello();
    const Received add = d.expect(Op::add_region);
    EXPECT_EQ(add.fds.size(), 1u);
    d.refuse(add, EINVAL, "gpa", "0x1001 is not page aligned");
    d.answer_read(0x0800'0002, 0x0);
    d.send(msi_packet(1, 0x21));
    d.send(notice_packet(1, 0x10, "nic0 (vSID 0x10): DMA to 0x8000040 faulted"));
    d.receive();  // the client closes
  });

  vsmmu_client* client = nullptr;
  ASSERT_EQ(vsmmu_client_connect(path.c_str(), &client), 0) << vsmmu_client_last_error(nullptr);
  vsmmu_daemon_info info{};
  info.size = sizeof info;
  ASSERT_EQ(vsmmu_client_daemon_info(client, &info), 0);
  EXPECT_EQ(info.host, VSMMU_HOST_SIM);
  EXPECT_EQ(info.max_message, 4096u);
  EXPECT_EQ(info.features, VSMMU_FEATURE_POSTED_WRITES);

  UniqueFd memfd(::eventfd(0, EFD_CLOEXEC));
  EXPECT_EQ(vsmmu_client_add_region(client, 0x1001, 0x1000, memfd.get(), 0), -EINVAL);
  EXPECT_STREQ(vsmmu_client_last_error(client),
               "vsmmud ADD_REGION: gpa: 0x1001 is not page aligned (EINVAL, errno 22)");
  std::uint64_t idr0 = 0;
  EXPECT_EQ(vsmmu_client_mmio_read(client, 1, 0x0, 4, &idr0), 0) << vsmmu_client_last_error(client);
  EXPECT_EQ(idr0, 0x0800'0002u);
  pollfd readable{vsmmu_client_fd(client), POLLIN, 0};
  ASSERT_EQ(::poll(&readable, 1, 5000), 1) << "the MSI waits on the connection";
  vsmmu_msi msis[4]{};
  std::uint32_t count = 0;
  EXPECT_EQ(vsmmu_client_take_msis(client, 2, msis, 4, &count), 0);
  EXPECT_EQ(count, 0u) << "vSMMU 2 has none";
  EXPECT_EQ(vsmmu_client_take_msis(client, 1, msis, 4, &count), 0);
  ASSERT_EQ(count, 1u);
  EXPECT_EQ(msis[0].vsmmu, 1u);
  EXPECT_EQ(msis[0].address, 0x0809'0040u);
  EXPECT_EQ(msis[0].data, 0x21u);
  EXPECT_EQ(vsmmu_client_take_msis(client, 1, nullptr, 4, &count), -EINVAL);
  auto notices = std::make_unique<vsmmu_notice[]>(2);  // the notice follows the MSI: read now or soon
  count = 0;
  for (int i = 0; i < 500 && count == 0; ++i) {
    ASSERT_EQ(vsmmu_client_take_notices(client, 1, notices.get(), 2, &count), 0) << vsmmu_client_last_error(client);
    if (count == 0) std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(count, 1u);
  EXPECT_EQ(notices[0].vsmmu, 1u);
  EXPECT_EQ(notices[0].kind, VSMMU_NOTICE_MSI_WINDOW_FAULT);
  EXPECT_EQ(notices[0].vsid, 0x10u);
  EXPECT_STREQ(notices[0].text, "nic0 (vSID 0x10): DMA to 0x8000040 faulted");
  EXPECT_EQ(vsmmu_client_take_notices(client, 1, nullptr, 2, &count), -EINVAL);
  EXPECT_EQ(vsmmu_client_mmio_read(client, 1, 0x0, 4, nullptr), -EINVAL);
  vsmmu_client_close(client);
  daemon.join();
  socket.remove();

  vsmmu_client* none = nullptr;
  EXPECT_EQ(vsmmu_client_connect(path.c_str(), &none), -ENOENT);
  EXPECT_EQ(none, nullptr);
  EXPECT_NE(std::string(vsmmu_client_last_error(nullptr)).find(path), std::string::npos);
}


// CREATE_VSMMU through the C API: `present` without a field's VSMMU_WISH_* bit leaves it on "auto"; the stall
// wish (VSMMU_WISH_STALL) and VSMMU_CREATE_MSI_DELIVERY reach the daemon as docs/protocol.md lays them out.
TEST(ClientCApi, CreateSendsStatedWishesAndLeavesTheRestOnAuto) {
  ListeningSocket socket;
  std::thread daemon([&socket] {
    UniqueFd connection(::accept4(socket.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    FakeDaemon d(connection.get());
    d.answer_hello();
    const Received create = d.expect(Op::create_vsmmu);
    const auto req = create.body<CreateRequest>();
    EXPECT_EQ(req.flags, kCreateMsiDelivery);
    EXPECT_EQ(req.wishes.present, kWishStall | kWishSsidBits) << "every other field on auto";
    EXPECT_EQ(req.wishes.stall, 1u);
    EXPECT_EQ(req.wishes.ssid_bits, 5u);
    EXPECT_EQ(req.wishes.ipa_bits, 0u);
    CreateReply reply;
    reply.handle = 3;
    reply.idr[1] = 5u << 6;  // IDR1.SSIDSIZE
    Header h = create.header;
    h.flags = kFlagReply;
    h.vsmmu = 3;
    d.send(build(h, reply));
    d.receive();  // the client closes
  });
  vsmmu_client* client = nullptr;
  ASSERT_EQ(vsmmu_client_connect(socket.path.c_str(), &client), 0) << vsmmu_client_last_error(nullptr);
  vsmmu_wishes wishes{};
  wishes.present = VSMMU_WISHES_AUTO | VSMMU_WISH_STALL | VSMMU_WISH_SSID_BITS;
  wishes.stall = 1;
  wishes.ssid_bits = 5;
  vsmmu_create_args args{};
  args.size = sizeof args;
  args.wishes = &wishes;
  args.device_name = "nic0";
  args.vsid = 0x10;
  args.flags = VSMMU_CREATE_MSI_DELIVERY;
  std::uint32_t handle = 0;
  vsmmu_id_registers ids{};
  ids.size = sizeof ids;
  EXPECT_EQ(vsmmu_client_create_vsmmu(client, &args, &handle, &ids), 0) << vsmmu_client_last_error(client);
  EXPECT_EQ(handle, 3u);
  EXPECT_EQ(ids.idr[1], 5u << 6);
  args.flags = 1u << 2;
  EXPECT_EQ(vsmmu_client_create_vsmmu(client, &args, &handle, &ids), -EINVAL);
  EXPECT_NE(std::string(vsmmu_client_last_error(client)).find("args.flags: unknown bits 0x4"), std::string::npos)
      << vsmmu_client_last_error(client);
  vsmmu_client_close(client);
  daemon.join();
  socket.remove();
}

}  // namespace
}  // namespace vsmmu::service
