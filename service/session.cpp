#include "service/session.hpp"

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>

#include "base/log.hpp"
#include "host/sim/sim_host.hpp"
#include "service/packet_io.hpp"
#include "service/served_vsmmu.hpp"
#include "service/server.hpp"
#include "service/wire_wishes.hpp"

namespace vsmmu::service {

namespace {

constexpr const char* kLog = "vsmmud";

Header reply_to(const Header& request) {
  Header h;
  h.op = request.op;
  h.flags = kFlagReply;
  h.tag = request.tag;
  h.vsmmu = request.vsmmu;
  return h;
}

template <class T>
std::vector<std::byte> ok(const Header& request, const T& body, std::initializer_list<std::span<const std::byte>> tail = {}) {
  return build(reply_to(request), body, tail);
}


// An error as a refusal's reason: where and what; the errno travels in the reply's status (a client adds it once).
std::string reason_of(const Error& e) { return fmt::format("{}: {}", e.where, e.message); }

nesting::DeviceSpec to_device(const DeviceRef& d, std::vector<host::UniqueFd>& fds) {
  nesting::DeviceSpec spec;
  spec.vsid = d.vsid;
  if (d.fd_index >= 0) {
    spec.fd = fds[static_cast<std::size_t>(d.fd_index)].release();  // taken over by the vSMMU
  } else {
    spec.path = d.name;
  }
  return spec;
}

bool is_migration(const RequestArgs& a) {
  return std::holds_alternative<DirtyStartArgs>(a) || std::holds_alternative<DirtyStopArgs>(a) ||
         std::holds_alternative<DirtyGetArgs>(a) || std::holds_alternative<SaveStateArgs>(a) ||
         std::holds_alternative<LoadStateArgs>(a);
}

std::string device_label(const DeviceRef& d) {
  return d.fd_index >= 0 ? fmt::format("the VFIO cdev fd at vSID {:#x}", d.vsid) : fmt::format("{} at vSID {:#x}", d.name, d.vsid);
}

}  // namespace

Session::Session(Server& server, Socket socket, std::uint64_t id, std::string peer)
    : server_(server), strand_(boost::asio::make_strand(server.io())), socket_(std::move(socket)), id_(id),
      label_(fmt::format("client {} ({})", id, peer)), buffer_(server.options().limits.max_message) {}

Session::~Session() = default;

void Session::start() {
  boost::system::error_code ec;
  socket_.native_non_blocking(true, ec);
  log::info(kLog, "{}: connected", label_);
  boost::asio::post(strand_, [self = shared_from_this()] { self->read(); });
}

bool Session::can_read() const {
  const auto limit = server_.options().limits.max_pending;
  return !closed_ && in_flight_ + out_.size() < limit;
}

void Session::read() {
  if (reading_ || !can_read()) return;
  reading_ = true;
  socket_.async_wait(Socket::wait_read, boost::asio::bind_executor(strand_, [self = shared_from_this()](boost::system::error_code ec) {
    self->reading_ = false;
    if (self->closed_) return;
    if (ec) return self->close_on_strand(fmt::format("waiting to read: {}", ec.message()));
    self->on_readable();
  }));
}

void Session::on_readable() {
  const auto& limits = server_.options().limits;
  // Up to a handful of packets per wake-up, then back to the loop so other clients get their turn.
  for (int n = 0; n < 16 && can_read(); ++n) {
    auto r = receive_packet(socket_.native_handle(), buffer_, limits.max_fds);
    if (!r) {
      if (r.error().err == EAGAIN || r.error().err == EWOULDBLOCK) break;
      return close_on_strand(fmt::format("reading: {}", r.error()));
    }
    if (r->size == 0 && !r->truncated && r->fds.empty()) return close_on_strand("the client closed the connection");
    server_.counters().requests.fetch_add(1, std::memory_order_relaxed);
    Header h;
    if (r->size >= sizeof(Header)) std::memcpy(&h, buffer_.data(), sizeof h);
    const std::uint16_t async = (h.flags & kFlagPosted) ? kFlagAsync : 0;  // nobody waits for a posted write's reply
    h.flags = 0;
    if (r->truncated) {
      refuse(h, Refusal{EMSGSIZE, h.op, "header.size",
                        fmt::format("the packet is larger than {} bytes, the max_message HELLO announced", limits.max_message)},
             async);
      continue;
    }
    if (r->fds_truncated) {
      refuse(h, Refusal{EINVAL, h.op, "fds", fmt::format("more than {} fds in one packet (max_fds from HELLO)", limits.max_fds)},
             async);
      continue;
    }
    handle(std::span(buffer_.data(), r->size), std::move(r->fds));
    if (closed_) return;
  }
  read();
}

void Session::handle(std::span<const std::byte> packet, std::vector<host::UniqueFd> fds) {
  DecodeContext ctx{server_.options().host, server_.options().limits.max_message};
  auto decoded = decode_request(packet, fds.size(), ctx);
  if (!decoded) {
    Header h;
    if (packet.size() >= sizeof h) std::memcpy(&h, packet.data(), sizeof h);
    const std::uint16_t async = (h.flags & kFlagPosted) ? kFlagAsync : 0;
    h.flags = 0;
    return refuse(h, decoded.error(), async);
  }
  Request& req = *decoded;
  // What HELLO granted (decode_request has no state).
  if ((req.header.flags & kFlagPosted) && !(features_ & kFeaturePostedWrites))
    return refuse(req.header, Refusal{EINVAL, req.header.op, "header.flags",
                                      "POSTED needs kFeaturePostedWrites offered in HELLO and granted in its reply"},
                  kFlagAsync);
  if (std::holds_alternative<SimDmaArgs>(req.args) && !(features_ & kFeatureSimDma))
    return refuse(req.header, Refusal{EOPNOTSUPP, req.header.op, "header.op",
                                      "SIM_DMA needs kFeatureSimDma offered in HELLO and granted in its reply (the simulated host only)"});
  if (is_migration(req.args) && !(features_ & kFeatureMigration))
    return refuse(req.header, Refusal{EOPNOTSUPP, req.header.op, "header.op",
                                      "live migration needs kFeatureMigration offered in HELLO and granted in its reply"});
  const bool is_hello = std::holds_alternative<HelloArgs>(req.args);
  if (!hello_ && !is_hello)
    return refuse(req.header, Refusal{EPROTO, req.header.op, "header.op", "the first request on a connection must be HELLO"});
  if (hello_ && is_hello) return refuse(req.header, Refusal{EPROTO, req.header.op, "header.op", "HELLO was already answered"});
  execute(req, fds);
}

void Session::execute(Request& req, std::vector<host::UniqueFd>& fds) {
  const auto& limits = server_.options().limits;
  const Header& h = req.header;
  if (auto* hello = std::get_if<HelloArgs>(&req.args)) {
    auto host = server_.host_for_client();
    if (!host) return refuse(h, "host", host.error());
    host_ = std::move(*host);
    hello_ = true;
    HelloReply r;
    r.version = kProtocolVersion;
    r.features = hello->fixed.features & kFeaturePostedWrites;
    if (server_.options().host == HostKind::sim) r.features |= hello->fixed.features & kFeatureSimDma;
    r.features |= hello->fixed.features & kFeatureMigration;  // on every host: conservative where it cannot track
    r.features |= hello->fixed.features & kFeatureMsi;        // on every host: the vSMMU's own MSIs
    r.features |= hello->fixed.features & kFeatureNotice;     // on every host: the vSMMUs' notices
    r.host = static_cast<std::uint32_t>(server_.options().host);
    r.max_message = limits.max_message;
    r.max_fds = limits.max_fds;
    r.max_vsmmus = limits.max_vsmmus;
    r.max_devices = limits.max_devices;
    r.max_regions = limits.max_regions;
    r.max_pending = limits.max_pending;
    features_ = r.features;
    return reply(ok(h, r));
  }
  if (auto* a = std::get_if<AddRegionArgs>(&req.args)) {
    if (auto m = guest_memory(); !m) return refuse(h, "host", m.error());
    if (memory_->regions() >= limits.max_regions)
      return refuse(h, Refusal{ENOSPC, h.op, "regions", fmt::format("this connection already has max_regions ({}) regions", limits.max_regions)});
    if (auto r = memory_->add(a->gpa, a->length, std::move(fds[0]), a->fd_offset); !r) return refuse(h, "gpa", r.error());
    log::debug(kLog, "{}: guest RAM [{:#x}, +{:#x}) added", label_, a->gpa, a->length);
    return reply(ok(h, EmptyReply{}));
  }
  if (auto* rm = std::get_if<RemoveRegionArgs>(&req.args)) {
    if (!memory_) return refuse(h, Refusal{ENOENT, h.op, "gpa", "this connection has no guest RAM regions"});
    if (auto r = memory_->remove(rm->gpa); !r) return refuse(h, "gpa", r.error());
    return reply(ok(h, EmptyReply{}));
  }
  if (auto* c = std::get_if<CreateArgs>(&req.args)) {
    if (vsmmus_.size() >= limits.max_vsmmus)
      return refuse(h, Refusal{ENOSPC, h.op, "vsmmu", fmt::format("this connection already has max_vsmmus ({}) vSMMUs", limits.max_vsmmus)});
    if (devices_ >= limits.max_devices)
      return refuse(h, Refusal{ENOSPC, h.op, "device", fmt::format("this connection already has max_devices ({}) devices", limits.max_devices)});
    // The MSI wish gives the guest EVENTQ/GERROR MSIs it will aim at its interrupt controller: without MSI
    // messages they would reach nothing (GERROR.MSI_*_ABT_ERR) and the guest's interrupts would be dead.
    if ((c->fixed.wishes.present & kWishMsi) && c->fixed.wishes.msi && !(features_ & kFeatureMsi))
      return refuse(h, Refusal{EOPNOTSUPP, h.op, "wishes.msi",
                               "IDR0.MSI needs kFeatureMsi offered in HELLO and granted in its reply: the vSMMU's MSIs to "
                               "the guest's interrupt controller reach the VMM only as MSI messages"});
    // Declaring MSI delivery (which turns the MSI wish's auto on) likewise needs the messages to deliver.
    if ((c->fixed.flags & kCreateMsiDelivery) && !(features_ & kFeatureMsi))
      return refuse(h, Refusal{EOPNOTSUPP, h.op, "body.flags",
                               "kCreateMsiDelivery needs kFeatureMsi offered in HELLO and granted in its reply: the "
                               "vSMMU's MSIs reach the VMM only as MSI messages"});
    if (auto m = guest_memory(); !m) return refuse(h, "host", m.error());
    const std::uint32_t handle = next_handle_++;
    nesting::VirtualSmmuConfig config;
    config.name = c->name.empty() ? fmt::format("c{}-vsmmu{}", id_, handle) : c->name;
    config.wishes = from_wire(c->fixed.wishes, (c->fixed.flags & kCreateMsiDelivery) != 0);
    config.policy = c->fixed.policy == static_cast<std::uint32_t>(Policy::per_command) ? nesting::InvalidationPolicy::per_command
                                                                                       : nesting::InvalidationPolicy::batched;
    config.gbpa_abort_at_reset = (c->fixed.flags & kCreateGbpaAbort) != 0;
    if (c->fixed.commands_per_access) config.commands_per_access = c->fixed.commands_per_access;
    if (c->fixed.host_calls_per_access) config.host_calls_per_access = c->fixed.host_calls_per_access;
    const std::string what = device_label(c->device);
    auto v = nesting::VirtualSmmu::create(memory_->memory(), config, {to_device(c->device, fds)});
    if (!v) return refuse(h, "device", v.error());
    const auto& ids = (*v)->id_registers();
    auto served = std::make_shared<ServedVsmmu>(server_.io(), handle, fmt::format("{} {}", label_, config.name), memory_,
                                                std::move(*v));
    if (features_ & kFeatureMsi)
      served->route_msis([weak = weak_from_this(), handle](std::uint64_t address, std::uint32_t data) {
        // On the vSMMU's strand, inside the call that raised it: posted before that call's reply.
        if (auto self = weak.lock())
          boost::asio::post(self->strand_, [self, handle, address, data] { self->send_msi(handle, address, data); });
      });
    if (features_ & kFeatureNotice)
      served->route_notices([weak = weak_from_this(), handle](const nesting::Notice& notice) {
        if (auto self = weak.lock())
          boost::asio::post(self->strand_, [self, handle, notice] { self->send_notice(handle, notice); });
      });
    vsmmus_.emplace(handle, served);
    ++devices_;
    server_.register_vsmmu(served);
    CreateReply r;
    r.handle = handle;
    r.idr[0] = ids.idr0.value();
    r.idr[1] = ids.idr1.value();
    r.idr[2] = ids.idr2.value();
    r.idr[3] = ids.idr3.value();
    r.idr[4] = ids.idr4.value();
    r.idr[5] = ids.idr5.value();
    r.iidr = ids.iidr.value();
    r.aidr = ids.aidr.value();
    log::info(kLog, "{}: vSMMU {} (handle {}) created for {}", label_, config.name, handle, what);
    Header rh = reply_to(h);
    rh.vsmmu = handle;
    reply(build(rh, r));
    boost::asio::post(served->strand(), [served] { served->start(); });
    return;
  }
  if (auto* d = std::get_if<SimDmaArgs>(&req.args)) {
    auto* sim = server_.sim_host();
    if (!sim) return refuse(h, Refusal{EOPNOTSUPP, h.op, "op", "SIM_DMA needs the simulated host (vsmmud --host sim)"});
    SimDmaReply r;
    std::vector<std::byte> data;
    Result<host::sim::DmaResult> res;
    if (d->direction == DmaDirection::write) {
      res = sim->dma_write(d->engine, d->iova, d->data, d->ssid);
    } else {
      data.resize(d->length);
      res = sim->dma_read(d->engine, d->iova, data, d->ssid);
    }
    if (!res) return refuse(h, "engine", res.error());
    r.faulted = res->ok() ? 0 : 1;
    r.bytes = res->bytes;
    if (d->direction == DmaDirection::write || !res->ok()) data.clear();
    return reply(ok(h, r, {std::span<const std::byte>(data)}));
  }
  if (std::holds_alternative<DirtyStartArgs>(req.args) || std::holds_alternative<DirtyStopArgs>(req.args) ||
      std::holds_alternative<DirtyGetArgs>(req.args))
    return dirty_log(req, fds);
  if (std::holds_alternative<StatsArgs>(req.args) && h.vsmmu == 0) {
    auto r = server_.daemon_stats();
    r.connection_vsmmus = vsmmus_.size();
    r.connection_regions = memory_ ? memory_->regions() : 0;
    std::uint64_t objects = memory_ ? 1 : 0;  // the IOAS
    for (const auto& [handle, v] : vsmmus_) objects += v->host_objects();
    r.connection_host_objects = objects;
    return reply(ok(h, r));
  }
  on_vsmmu(req, fds);
}

// DIRTY_START, DIRTY_STOP, DIRTY_GET: the dirty log of the connection's guest RAM, on the connection's strand
// (the tracker is thread-safe; the vSMMUs log their own writes into it from theirs).
void Session::dirty_log(Request& req, std::vector<host::UniqueFd>& fds) {
  const Header& h = req.header;
  if (!memory_ || (memory_->regions() == 0 && std::holds_alternative<DirtyStartArgs>(req.args)))
    return refuse(h, Refusal{ENOENT, h.op, "regions",
                             "this connection has no guest RAM: ADD_REGION first, then DIRTY_START"});
  if (std::holds_alternative<DirtyStartArgs>(req.args)) {
    auto s = memory_->dirty_start();
    if (!s) return refuse(h, "dirty", s.error());
    DirtyStartReply r;
    r.mode = static_cast<std::uint32_t>(s->mode == nesting::DirtyMode::hardware ? DirtyLogMode::hardware
                                                                              : DirtyLogMode::conservative);
    r.parents = static_cast<std::uint32_t>(s->parents);
    r.tracking = static_cast<std::uint32_t>(s->tracking);
    r.reason_len = static_cast<std::uint32_t>(s->reason.size());
    if (s->mode == nesting::DirtyMode::conservative)
      log::warn(kLog, "{}: dirty tracking on, conservative: {}", label_, s->reason);
    else
      log::info(kLog, "{}: dirty tracking on: {} of {} nest parent(s) in hardware", label_, s->tracking, s->parents);
    return reply(ok(h, r, {bytes_of(s->reason)}));
  }
  if (std::holds_alternative<DirtyStopArgs>(req.args)) {
    if (auto s = memory_->dirty_stop(); !s) return refuse(h, "dirty", s.error());
    log::info(kLog, "{}: dirty tracking off", label_);
    return reply(ok(h, EmptyReply{}));
  }
  const auto& g = std::get<DirtyGetArgs>(req.args);
  if (!memory_->memory().dirty().tracking())
    return refuse(h, Refusal{EINVAL, h.op, "dirty", "dirty tracking is off: DIRTY_START before DIRTY_GET"});
  auto harvest = memory_->dirty_get(g.region_gpa, fds[0].get(), g.bitmap_offset, g.flags & kDirtyGetNoClear);
  if (!harvest) return refuse(h, harvest.error().err == ENOENT ? "body.region_gpa" : "fds", harvest.error());
  DirtyGetReply r;
  r.pages = harvest->pages;
  r.dirty = harvest->dirty;
  r.flags = (harvest->conservative ? kDirtyConservative : 0u) | (harvest->removed ? kDirtyRemoved : 0u);
  return reply(ok(h, r));
}

// The connection's guest RAM, made (its IOAS allocated) on the first request that needs it.
Result<void> Session::guest_memory() {
  if (memory_) return {};
  // A kernel host is the client's own: the memory keeps it alive until the last vSMMU is gone.
  auto m = ClientMemory::create(*host_, server_.options().host == HostKind::kernel ? host_ : nullptr);
  if (!m) return std::unexpected(m.error());
  memory_ = std::move(*m);
  return {};
}

// Everything on one vSMMU runs on its strand, in the order the client sent it.
void Session::on_vsmmu(Request& req, std::vector<host::UniqueFd>& fds) {
  auto it = vsmmus_.find(req.header.vsmmu);
  if (it == vsmmus_.end())
    return refuse(req.header, Refusal{ENOENT, req.header.op, "header.vsmmu",
                                      fmt::format("no vSMMU {} on this connection (CREATE_VSMMU's reply gives the handle)", req.header.vsmmu)});
  if (std::holds_alternative<AttachArgs>(req.args) && devices_ >= server_.options().limits.max_devices)
    return refuse(req.header, Refusal{ENOSPC, req.header.op, "device",
                                      fmt::format("this connection already has max_devices ({}) devices", server_.options().limits.max_devices)});
  std::shared_ptr<ServedVsmmu> v = it->second;
  const bool destroy = std::holds_alternative<DestroyArgs>(req.args);
  if (destroy) vsmmus_.erase(it);  // later requests naming it are refused; its strand finishes what came before
  ++in_flight_;
  host::UniqueFd fd = fds.empty() ? host::UniqueFd() : std::move(fds[0]);
  boost::asio::post(v->strand(), [self = shared_from_this(), v, req = std::move(req), fd = std::move(fd)]() mutable {
    const Header& h = req.header;
    std::vector<std::byte> out;
    int device_delta = 0;
    auto failed = [&](std::string field, const Error& e, std::uint16_t flags = 0) {
      Header rh = h;
      rh.flags = 0;
      out = build_error(rh, Refusal{e.err, h.op, std::move(field), reason_of(e)}, flags);
      self->server_.counters().refused.fetch_add(1, std::memory_order_relaxed);
    };
    if (v->closed()) {
      failed("header.vsmmu", Error{ENOENT, "vsmmud", "the vSMMU was destroyed"});
    } else if (auto* r = std::get_if<MmioReadArgs>(&req.args)) {
      auto value = v->mmio_read(r->offset, r->width);
      if (!value) failed("offset", value.error());
      else out = ok(h, MmioReadReply{.value = *value});
    } else if (auto* w = std::get_if<MmioWriteArgs>(&req.args)) {
      auto done = v->mmio_write(w->offset, w->value, w->width);
      if (!done) {
        if (w->posted) v->count_posted_failure();
        failed("offset", done.error(), w->posted ? kFlagAsync : 0);
        if (w->posted) log::info(kLog, "{}: a posted MMIO write at {:#x} failed: {}", v->label(), w->offset, done.error());
      } else if (!w->posted) {
        out = ok(h, EmptyReply{});
      }
    } else if (auto* a = std::get_if<AttachArgs>(&req.args)) {
      std::vector<host::UniqueFd> one;
      if (fd) one.push_back(std::move(fd));
      if (auto done = v->attach(to_device(a->device, one)); !done) failed("device", done.error());
      else {
        device_delta = 1;
        log::info(kLog, "{}: {} attached", v->label(), device_label(a->device));
        out = ok(h, EmptyReply{});
      }
    } else if (auto* d = std::get_if<DetachArgs>(&req.args)) {
      if (auto done = v->detach(d->vsid); !done) failed("vsid", done.error());
      else {
        device_delta = -1;
        log::info(kLog, "{}: vSID {:#x} detached", v->label(), d->vsid);
        out = ok(h, EmptyReply{});
      }
    } else if (std::holds_alternative<SaveStateArgs>(req.args)) {
      auto saved = v->save_state(fd.get());
      if (!saved) failed("state", saved.error());
      else out = ok(h, SaveStateReply{.state_bytes = *saved});
    } else if (auto* l = std::get_if<LoadStateArgs>(&req.args)) {
      if (auto done = v->load_state(fd.get(), l->state_bytes); !done) failed("state", done.error());
      else out = ok(h, EmptyReply{});
    } else if (auto* s = std::get_if<SetIrqArgs>(&req.args)) {
      v->set_irq(s->line, std::move(fd));
      out = ok(h, EmptyReply{});
    } else if (std::holds_alternative<StatsArgs>(req.args)) {
      out = ok(h, v->stats());
    } else if (std::holds_alternative<DestroyArgs>(req.args)) {
      device_delta = -static_cast<int>(v->devices());
      v->close("DESTROY_VSMMU");
      out = ok(h, EmptyReply{});
    } else {
      failed("header.op", Error{EINVAL, "vsmmud", "not an op on a vSMMU"});
    }
    boost::asio::post(self->strand_, [self, out = std::move(out), device_delta]() mutable {
      self->devices_ = static_cast<std::size_t>(static_cast<long>(self->devices_) + device_delta);
      if (!out.empty()) self->reply(std::move(out));
      self->request_done();
    });
  });
}

void Session::request_done() {
  --in_flight_;
  read();
}

void Session::refuse(const Header& request, const Refusal& refusal, std::uint16_t extra_flags) {
  server_.counters().refused.fetch_add(1, std::memory_order_relaxed);
  log::info(kLog, "{}: refused {}", label_, refusal.to_string());
  reply(build_error(request, refusal, extra_flags));
}

void Session::refuse(const Header& request, std::string field, const Error& error, std::uint16_t extra_flags) {
  refuse(request, Refusal{error.err, request.op, std::move(field), reason_of(error)}, extra_flags);
}

template <class T>
void Session::unsolicited(Op op, std::uint32_t vsmmu, T body, std::uint32_t& dropped, std::size_t max_queued,
                          std::initializer_list<std::span<const std::byte>> tail) {
  if (closed_) return;
  if (out_.size() >= max_queued) {
    if (dropped++ == 0)
      log::warn(kLog, "{}: the client is not reading: {} messages are dropped (counted in the next one sent)", label_,
                op_name(static_cast<std::uint16_t>(op)));
    return;
  }
  body.dropped = std::exchange(dropped, 0);
  Header h;
  h.op = static_cast<std::uint16_t>(op);
  h.flags = kFlagReply | kFlagAsync;
  h.tag = 0;
  h.vsmmu = vsmmu;
  reply(build(h, body, tail));
}

void Session::send_msi(std::uint32_t vsmmu, std::uint64_t address, std::uint32_t data) {
  MsiMessage m;
  m.address = address;
  m.data = data;
  unsolicited(Op::msi, vsmmu, m, msis_dropped_, kMaxQueuedMsis);
}

void Session::send_notice(std::uint32_t vsmmu, const nesting::Notice& notice) {
  static_assert(static_cast<std::uint32_t>(nesting::NoticeKind::msi_window_fault) == 1, "docs/protocol.md NOTICE");
  const std::string_view text = std::string_view(notice.text).substr(0, kMaxNoticeText);
  NoticeMessage m;
  m.kind = static_cast<std::uint32_t>(notice.kind);
  m.vsid = notice.vsid;
  m.text_len = static_cast<std::uint32_t>(text.size());
  unsolicited(Op::notice, vsmmu, m, notices_dropped_, kMaxQueuedNotices, {bytes_of(text)});
}

void Session::reply(std::vector<std::byte> packet) {
  if (closed_) return;
  out_.push_back(std::move(packet));
  flush();
}

// Sends what is queued without blocking; a full socket buffer waits for the client to read (and, while
// max_pending replies wait, nothing more is read from it).
void Session::flush() {
  while (!out_.empty() && !writing_ && !closed_) {
    auto s = send_packet(socket_.native_handle(), out_.front());
    if (s) {
      out_.pop_front();
      continue;
    }
    if (s.error().err == EAGAIN || s.error().err == EWOULDBLOCK) {
      writing_ = true;
      socket_.async_wait(Socket::wait_write, boost::asio::bind_executor(strand_, [self = shared_from_this()](boost::system::error_code ec) {
        self->writing_ = false;
        if (self->closed_) return;
        if (ec) return self->close_on_strand(fmt::format("waiting to write: {}", ec.message()));
        self->flush();
        self->read();
      }));
      return;
    }
    return close_on_strand(fmt::format("writing a reply: {}", s.error()));
  }
}

void Session::close(std::string why) {
  boost::asio::post(strand_, [self = shared_from_this(), why = std::move(why)] { self->close_on_strand(why); });
}

void Session::close_on_strand(const std::string& why) {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ec;
  socket_.close(ec);
  out_.clear();
  log::info(kLog, "{}: closing ({}): {} vSMMU(s), {} region(s) released", label_, why, vsmmus_.size(),
            memory_ ? memory_->regions() : 0);
  for (auto& [handle, v] : vsmmus_)
    boost::asio::post(v->strand(), [v] { v->close("its client went away"); });
  vsmmus_.clear();
  memory_.reset();  // the vSMMUs hold it until they are closed
  host_.reset();
  server_.forget_session(this);
}

}  // namespace vsmmu::service
