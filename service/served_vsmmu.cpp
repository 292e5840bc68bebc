#include "service/served_vsmmu.hpp"

#include <poll.h>
#include <unistd.h>

#include <set>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>

#include "base/log.hpp"
#include "base/try.hpp"

namespace vsmmu::service {

namespace {
constexpr const char* kLog = "vsmmud";
constexpr std::uint64_t kCr0 = 0x20;  // SMMU_CR0 (IHI 0070 6.3.9): EVENTQEN creates or destroys vEVENTQs
// SMMU_CMDQ_PROD and SMMU_CMDQ_CONS (IHI 0070 6.3.26, 6.3.27): the accesses that run the command queue, and so
// the only ones after which command work can be left over (VirtualSmmuConfig::commands_per_access).
constexpr std::uint64_t kCmdqProd = 0x98, kCmdqCons = 0x9c;

// The whole of `data` at offset 0 of `fd`, which ends there.
Result<void> write_file(int fd, std::span<const std::byte> data) {
  if (::ftruncate(fd, static_cast<off_t>(data.size())) != 0)
    return fail(errno, kLog, "ftruncate of the state file to {} bytes: {} (send a memfd)", data.size(), std::strerror(errno));
  for (std::size_t done = 0; done < data.size();) {
    const ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      return fail(n < 0 ? errno : EIO, kLog, "writing the state file at {} of {} bytes: {}", done, data.size(),
                  n < 0 ? std::strerror(errno) : "nothing written");
    done += static_cast<std::size_t>(n);
  }
  return {};
}

// `bytes` from offset 0 of `fd`.
Result<std::vector<std::byte>> read_file(int fd, std::uint64_t bytes) {
  std::vector<std::byte> data(bytes);
  for (std::size_t done = 0; done < data.size();) {
    const ssize_t n = ::pread(fd, data.data() + done, data.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(errno, kLog, "reading the state file at {}: {}", done, std::strerror(errno));
    if (n == 0)
      return fail(EINVAL, kLog, "the state file ends after {} bytes; state_bytes says {}", done, data.size());
    done += static_cast<std::size_t>(n);
  }
  return data;
}

bool readable_now(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}
}  // namespace

ServedVsmmu::ServedVsmmu(boost::asio::io_context& io, std::uint32_t handle, std::string label,
                         std::shared_ptr<ClientMemory> memory, std::unique_ptr<nesting::VirtualSmmu> vsmmu)
    : io_(io), strand_(boost::asio::make_strand(io)), handle_(handle), label_(std::move(label)),
      memory_(std::move(memory)), vsmmu_(std::move(vsmmu)) {
  // The handlers run on the thread that called into the vSMMU: always this strand.
  vsmmu_->set_irq_handler(smmu::Irq::eventq, [this] { fire(IrqLine::eventq); });
  vsmmu_->set_irq_handler(smmu::Irq::gerror, [this] { fire(IrqLine::gerror); });
  vsmmu_->set_irq_handler(smmu::Irq::cmd_sync, [this] { fire(IrqLine::cmd_sync); });
  route_notices({});
  refresh_counts();
}

// Notices for the operator (a device whose MSIs fault in the guest's stage 1, docs/interrupts.md): always logged
// with the vSMMU's label, and given to `sink` if there is one.
void ServedVsmmu::route_notices(nesting::NoticeHandler sink) {
  vsmmu_->set_notice_handler([this, sink = std::move(sink)](const nesting::Notice& notice) {
    log::warn(kLog, "{}: {}", label_, notice.text);
    if (sink) sink(notice);
  });
}

ServedVsmmu::~ServedVsmmu() {
  for (auto& [fd, sd] : watches_) (void)sd->release();
}

void ServedVsmmu::start() { rewatch(); }

void ServedVsmmu::fire(IrqLine line) {
  const auto& fd = irq_fds_[static_cast<std::size_t>(line)];
  if (!fd) return;
  const std::uint64_t one = 1;
  if (::write(fd.get(), &one, sizeof one) < 0 && errno != EAGAIN)
    log::warn(kLog, "{}: signalling the client's interrupt eventfd failed: {}", label_, std::strerror(errno));
}

void ServedVsmmu::refresh_counts() {
  objects_.store(vsmmu_ ? vsmmu_->host_objects() : 0, std::memory_order_relaxed);
}

Result<std::uint64_t> ServedVsmmu::mmio_read(std::uint64_t offset, unsigned width) {
  auto r = vsmmu_->mmio_read(offset, width);
  // A read of CMDQ_CONS drives left-over command work and may leave more for later (its fd readable).
  if (offset == kCmdqCons) schedule_service();
  return r;
}

Result<void> ServedVsmmu::mmio_write(std::uint64_t offset, std::uint64_t value, unsigned width) {
  auto r = vsmmu_->mmio_write(offset, value, width);
  if (offset == kCr0) {
    rewatch();
    refresh_counts();
  } else if (offset == kCmdqProd) {
    schedule_service();  // a doorbell whose commands exceeded one access's budget leaves work for later
    refresh_counts();    // CFGI_* and SMMUEN change what the vSMMU holds
  }
  return r;
}

Result<void> ServedVsmmu::attach(nesting::DeviceSpec device) {
  auto r = vsmmu_->add_device(std::move(device));
  if (r) devices_.fetch_add(1, std::memory_order_relaxed);
  rewatch();
  refresh_counts();
  return r;
}

Result<void> ServedVsmmu::detach(std::uint32_t vsid) {
  auto r = vsmmu_->remove_device(vsid);
  if (r) devices_.fetch_sub(1, std::memory_order_relaxed);
  rewatch();
  refresh_counts();
  return r;
}

void ServedVsmmu::set_irq(IrqLine line, host::UniqueFd eventfd) { irq_fds_[static_cast<std::size_t>(line)] = std::move(eventfd); }

VsmmuStatsReply ServedVsmmu::stats() {
  const auto s = vsmmu_->stats();
  VsmmuStatsReply r;
  r.host_calls = s.host_calls;
  r.hwpt_allocs = s.hwpt_allocs;
  r.hwpt_shared = s.hwpt_shared;
  r.attaches = s.attaches;
  r.ste_unchanged = s.ste_unchanged;
  r.invalidate_calls = s.invalidate_calls;
  r.forwarded = s.forwarded;
  r.host_time_ns = static_cast<std::uint64_t>(s.host_time.count());
  r.commands = s.commands;
  r.coalesced = s.coalesced;
  r.syncs = s.syncs;
  r.ste_reinstalls = s.ste_reinstalls;
  r.command_errors = s.command_errors;
  r.bad_stes = s.bad_stes;
  r.events = s.events;
  r.events_lost = s.events_lost;
  r.deferred = s.deferred;
  r.host_objects = vsmmu_->host_objects();
  r.posted_failures = posted_failures_;
  r.msi_window_faults = s.msi_window_faults;
  r.stalls = s.stalls;
  r.stalls_resumed = s.stalls_resumed;
  r.stalls_aborted = s.stalls_aborted;
  r.stalls_dropped = s.stalls_dropped;
  std::set<host::IovaRange> windows;
  for (const auto& w : vsmmu_->msi_windows()) windows.insert(w.window);
  if (!windows.empty()) {
    r.msi_window_base = windows.begin()->start;
    r.msi_window_size = windows.begin()->size();
    r.msi_windows = windows.size();
  }
  return r;
}

Result<std::uint64_t> ServedVsmmu::save_state(int fd) {
  auto state = vsmmu_->save_state();
  refresh_counts();
  if (!state) return std::unexpected(state.error());
  VSMMU_TRY(write_file(fd, *state));
  log::info(kLog, "{}: state saved ({} bytes)", label_, state->size());
  return state->size();
}

Result<void> ServedVsmmu::load_state(int fd, std::uint64_t bytes) {
  VSMMU_TRY_ASSIGN(const std::vector<std::byte> state, read_file(fd, bytes));
  auto r = vsmmu_->load_state(state);
  rewatch();  // EVENTQEN on in the state: the vEVENTQs are new
  refresh_counts();
  if (r) log::info(kLog, "{}: state loaded ({} bytes)", label_, bytes);
  return r;
}

// The fds change when the guest toggles EVENTQEN (vEVENTQs made or destroyed) and when devices come and go
// (a vIOMMU and its vEVENTQ with them). Every watch is dropped and made again: an fd number the vSMMU closed
// may have been reused by a new vEVENTQ, which epoll must register afresh.
void ServedVsmmu::rewatch() {
  for (auto& [fd, sd] : watches_) (void)sd->release();
  watches_.clear();
  if (!vsmmu_) return;
  for (int fd : vsmmu_->event_fds()) {
    watches_.emplace(fd, std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd));
    arm(fd);
  }
  schedule_service();
}

// Asio registers descriptors edge-triggered: readiness that came before the wait was queued raises no new
// edge, so after queueing the wait the fd is polled once (nothing is missed in between: the wait is queued).
void ServedVsmmu::arm(int fd) {
  auto it = watches_.find(fd);
  if (it == watches_.end()) return;
  it->second->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                         boost::asio::bind_executor(strand_, [self = shared_from_this(), fd](boost::system::error_code ec) {
                           if (ec || self->closed()) return;
                           self->service();
                           self->arm(fd);
                         }));
}

void ServedVsmmu::schedule_service() {
  if (service_scheduled_ || !vsmmu_) return;
  bool any = false;
  for (const auto& [fd, sd] : watches_) any = any || readable_now(fd);
  if (!any) return;
  service_scheduled_ = true;
  boost::asio::post(strand_, [self = shared_from_this()] {
    self->service_scheduled_ = false;
    if (!self->closed()) self->service();
  });
}

void ServedVsmmu::service() {
  if (auto n = vsmmu_->process_events(); !n)
    log::warn(kLog, "{}: moving host events into the guest's event queue failed: {}", label_, n.error());
  refresh_counts();
  schedule_service();  // work left within the budget, or events that came meanwhile
}

void ServedVsmmu::close(std::string_view why) {
  if (!vsmmu_) return;
  for (auto& [fd, sd] : watches_) (void)sd->release();
  watches_.clear();
  const std::size_t objects = vsmmu_->host_objects();
  vsmmu_.reset();
  for (auto& fd : irq_fds_) fd.reset();
  refresh_counts();
  devices_.store(0, std::memory_order_relaxed);
  log::info(kLog, "{}: destroyed ({}): {} host object(s) released, devices back to blocking DMA", label_, why, objects);
  memory_.reset();
}

}  // namespace vsmmu::service
