#include "service/client/remote_vsmmu.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "base/try.hpp"

namespace vsmmu::service {
namespace {

constexpr const char* kLog = "vsmmud.remote";

IrqLine wire_line(smmu::Irq line) { return line == smmu::Irq::gerror ? IrqLine::gerror : IrqLine::eventq; }

nesting::VirtualSmmuStats from_wire(const VsmmuStatsReply& r) {
  nesting::VirtualSmmuStats s;
  s.host_calls = r.host_calls;
  s.hwpt_allocs = r.hwpt_allocs;
  s.hwpt_shared = r.hwpt_shared;
  s.attaches = r.attaches;
  s.ste_unchanged = r.ste_unchanged;
  s.invalidate_calls = r.invalidate_calls;
  s.forwarded = r.forwarded;
  s.host_time = std::chrono::nanoseconds(r.host_time_ns);
  s.commands = r.commands;
  s.coalesced = r.coalesced;
  s.syncs = r.syncs;
  s.ste_reinstalls = r.ste_reinstalls;
  s.command_errors = r.command_errors;
  s.bad_stes = r.bad_stes;
  s.events = r.events;
  s.events_lost = r.events_lost;
  s.deferred = r.deferred;
  s.msi_window_faults = r.msi_window_faults;
  s.stalls = r.stalls;
  s.stalls_resumed = r.stalls_resumed;
  s.stalls_aborted = r.stalls_aborted;
  s.stalls_dropped = r.stalls_dropped;
  return s;
}

// IDR0-5, IIDR and AIDR as CREATE_VSMMU's reply gives them (IHI 0070 6.3.1-6.3.8).
nesting::GuestIdRegisters from_wire(const CreateReply& r) {
  return nesting::GuestIdRegisters{smmu::Idr0::of(r.idr[0]), smmu::Idr1::of(r.idr[1]), smmu::Idr2::of(r.idr[2]),
                                   smmu::Idr3::of(r.idr[3]), smmu::Idr4::of(r.idr[4]), smmu::Idr5::of(r.idr[5]),
                                   smmu::Iidr::of(r.iidr),   smmu::Aidr::of(r.aidr)};
}

}  // namespace

RemoteVsmmu::RemoteVsmmu(Client& client, const CreateReply& created)
    : client_(client), handle_(created.handle), ids_(from_wire(created)) {}

Result<std::unique_ptr<RemoteVsmmu>> RemoteVsmmu::create(Client& client, const VsmmuOptions& options,
                                                         const RemoteDevice& device) {
  VSMMU_TRY_ASSIGN(const CreateReply created, client.create_vsmmu(options, device));
  // From here the destructor destroys the vSMMU in the daemon if a step below fails.
  std::unique_ptr<RemoteVsmmu> vsmmu(new RemoteVsmmu(client, created));
  for (std::size_t i = 0; i < kLines.size(); ++i) {
    host::UniqueFd fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!fd) return fail(errno, "vsmmud", "vSMMU {}: eventfd for an interrupt line: {}", created.handle, std::strerror(errno));
    if (auto set = client.set_irq(created.handle, wire_line(kLines[i]), fd.get()); !set)
      return fail(set.error(), "vsmmud", "vSMMU {}: registering its interrupt eventfds", created.handle);
    vsmmu->irq_fds_[i] = std::move(fd);
  }
  return vsmmu;
}

RemoteVsmmu::~RemoteVsmmu() {
  if (auto destroyed = client_.destroy_vsmmu(handle_); !destroyed)
    log::warn(kLog, "vSMMU {} could not be destroyed in the daemon (it goes with the connection): {}", handle_,
              destroyed.error());
}

Result<std::uint64_t> RemoteVsmmu::mmio_read(std::uint64_t offset, unsigned size) {
  return client_.mmio_read(handle_, offset, size);
}

Result<void> RemoteVsmmu::mmio_write(std::uint64_t offset, std::uint64_t value, unsigned size) {
  return client_.mmio_write(handle_, offset, value, size);
}

void RemoteVsmmu::set_irq_handler(smmu::Irq line, std::function<void()> handler) {
  std::lock_guard lock(handlers_mu_);
  for (std::size_t i = 0; i < kLines.size(); ++i)
    if (kLines[i] == line) handlers_[i] = std::move(handler);
}

int RemoteVsmmu::irq_fd(smmu::Irq line) const {
  for (std::size_t i = 0; i < kLines.size(); ++i)
    if (kLines[i] == line) return irq_fds_[i].get();
  return -1;
}

Result<void> RemoteVsmmu::add_device(const RemoteDevice& device) { return client_.attach_device(handle_, device); }

Result<void> RemoteVsmmu::remove_device(std::uint32_t vsid) { return client_.detach_device(handle_, vsid); }

std::vector<int> RemoteVsmmu::event_fds() const {
  std::vector<int> fds;
  for (const auto& fd : irq_fds_) fds.push_back(fd.get());
  return fds;
}

Result<std::size_t> RemoteVsmmu::process_events() {
  std::array<bool, kLines.size()> fired{};
  for (std::size_t i = 0; i < kLines.size(); ++i) {
    std::uint64_t count = 0;
    const ssize_t n = ::read(irq_fds_[i].get(), &count, sizeof count);
    if (n == static_cast<ssize_t>(sizeof count)) {
      fired[i] = true;
    } else if (n < 0 && errno != EAGAIN) {
      return fail(errno, "vsmmud", "vSMMU {}: reading an interrupt eventfd: {}", handle_, std::strerror(errno));
    }
  }
  std::array<std::function<void()>, kLines.size()> handlers;
  nesting::VirtualSmmu::MsiHandler msi_handler;
  nesting::NoticeHandler notice_handler;
  {
    std::lock_guard lock(handlers_mu_);
    handlers = handlers_;
    msi_handler = msi_handler_;
    notice_handler = notice_handler_;
  }
  // In the order VirtualSmmu calls them: the notices, the wired lines, the MSIs.
  if (client_.notices()) {
    for (const ReceivedNotice& n : client_.take_notices(handle_)) {
      if (notice_handler) notice_handler(n.notice);
      else log::warn(kLog, "vSMMU {}: {}", handle_, n.notice.text);
    }
  }
  for (std::size_t i = 0; i < kLines.size(); ++i)
    if (fired[i] && handlers[i]) handlers[i]();
  if (msi_handler && client_.msis())
    for (const Msi& m : client_.take_msis(handle_)) msi_handler(m.address, m.data);
  return std::size_t{0};
}

void RemoteVsmmu::set_msi_handler(nesting::VirtualSmmu::MsiHandler handler) {
  std::lock_guard lock(handlers_mu_);
  msi_handler_ = std::move(handler);
}

void RemoteVsmmu::set_notice_handler(nesting::NoticeHandler handler) {
  std::lock_guard lock(handlers_mu_);
  notice_handler_ = std::move(handler);
}

nesting::VirtualSmmuStats RemoteVsmmu::stats() const {
  auto reply = client_.vsmmu_stats(handle_);
  std::lock_guard lock(stats_mu_);
  if (!reply) {
    log::warn(kLog, "vSMMU {}: the daemon's figures could not be read; reporting the last ones: {}", handle_,
              reply.error());
    return last_stats_;
  }
  last_stats_ = from_wire(*reply);
  return last_stats_;
}

Result<std::uint64_t> RemoteVsmmu::host_objects() const {
  VSMMU_TRY_ASSIGN(const VsmmuStatsReply reply, client_.vsmmu_stats(handle_));
  return reply.host_objects;
}

Result<std::vector<std::byte>> RemoteVsmmu::save_state() { return client_.save_state(handle_); }

Result<void> RemoteVsmmu::load_state(std::span<const std::byte> state) { return client_.load_state(handle_, state); }

}  // namespace vsmmu::service
