// One vSMMU the daemon serves: a nesting::VirtualSmmu whose every call runs in order on its own strand, the
// interrupt eventfds the client gave it (SET_IRQ), and the watch on its event fds (vEVENTQs, left-over command
// work) that moves host event records into guest RAM and signals the client's eventfd with no client round
// trip. Whatever a ServedVsmmu holds (the VirtualSmmu and, through shared ownership, the client's guest RAM
// and host) goes when it is closed: every device back to blocking DMA, every host object destroyed.
#pragma once

#include <utility>  // before Boost.Asio (awaitable needs it on 1.74)

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/strand.hpp>

#include "host/handles.hpp"
#include "nesting/virtual_smmu.hpp"
#include "service/client_memory.hpp"
#include "service/protocol.hpp"

namespace vsmmu::service {

class ServedVsmmu : public std::enable_shared_from_this<ServedVsmmu> {
 public:
  using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;

  ServedVsmmu(boost::asio::io_context& io, std::uint32_t handle, std::string label,
              std::shared_ptr<ClientMemory> memory, std::unique_ptr<nesting::VirtualSmmu> vsmmu);
  ~ServedVsmmu();

  Strand& strand() { return strand_; }
  std::uint32_t handle() const { return handle_; }
  const std::string& label() const { return label_; }
  // What it holds on the host now (updated on its strand after every call; read from anywhere).
  std::size_t host_objects() const { return objects_.load(std::memory_order_relaxed); }
  std::size_t devices() const { return devices_.load(std::memory_order_relaxed); }

  // ---- on the strand only
  // Starts watching the event fds (after creation).
  void start();
  bool closed() const { return !vsmmu_; }
  nesting::VirtualSmmu& vsmmu() { return *vsmmu_; }
  Result<std::uint64_t> mmio_read(std::uint64_t offset, unsigned width);
  Result<void> mmio_write(std::uint64_t offset, std::uint64_t value, unsigned width);
  Result<void> attach(nesting::DeviceSpec device);
  Result<void> detach(std::uint32_t vsid);
  void set_irq(IrqLine line, host::UniqueFd eventfd);
  // The vSMMU's MSIs outside guest RAM go to `sink` (the session's MSI messages), called on this strand.
  // Without it they abort (GERROR.MSI_*_ABT_ERR). Set before the vSMMU is reachable by requests.
  void route_msis(nesting::VirtualSmmu::MsiHandler sink) { vsmmu_->set_msi_handler(std::move(sink)); }
  // The vSMMU's notices go to `sink` too (the session's NOTICE messages), after they are logged; on this strand.
  // Set before the vSMMU is reachable by requests.
  void route_notices(nesting::NoticeHandler sink);
  VsmmuStatsReply stats();
  // SAVE_STATE: the state (nesting::VirtualSmmu::save_state) written into `fd` (truncated to its length, from
  // offset 0); returns the length. LOAD_STATE: `bytes` read from offset 0 of `fd` and loaded; the event fds are
  // watched anew (the guest's event queue is open again).
  Result<std::uint64_t> save_state(int fd);
  Result<void> load_state(int fd, std::uint64_t bytes);
  void count_posted_failure() { ++posted_failures_; }
  // Stops the watches and destroys the VirtualSmmu (its host objects); logs what it released.
  void close(std::string_view why);

 private:
  struct Watch;
  void rewatch();                   // event_fds() changed (CR0, devices): watch the new set
  void arm(int fd);
  void schedule_service();
  void service();                   // process_events() and re-arm
  void refresh_counts();
  void fire(IrqLine line);

  boost::asio::io_context& io_;
  Strand strand_;
  const std::uint32_t handle_;
  const std::string label_;
  std::shared_ptr<ClientMemory> memory_;          // guest RAM (and the host) outlive the vSMMU
  std::unique_ptr<nesting::VirtualSmmu> vsmmu_;
  std::map<int, std::unique_ptr<boost::asio::posix::stream_descriptor>> watches_;  // fds owned by vsmmu_
  bool service_scheduled_ = false;
  std::array<host::UniqueFd, 3> irq_fds_;        // by IrqLine
  std::uint64_t posted_failures_ = 0;
  std::atomic<std::size_t> objects_{0};
  std::atomic<std::size_t> devices_{1};  // create() bound the first
};

}  // namespace vsmmu::service
