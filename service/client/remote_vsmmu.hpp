// One vSMMU in vsmmud, seen as the in-process VirtualSmmu is (nesting::VsmmuEndpoint): a VMM written against
// the endpoint runs it in process or through the daemon with no other change.
//
// The differences an operator may meet: the daemon writes event records into the guest's RAM itself, so
// process_events() has nothing to move (it returns 0); the interrupt lines are eventfds the daemon signals
// (SET_IRQ), which event_fds() lists and process_events() drains, calling the handler of each line that fired;
// a VMM that hands a line's eventfd to KVM as an irqfd (irq_fd) leaves that fd out of its poll set. MMIO writes
// are posted when the daemon offers it: their failures come back through the Client (take_posted_failures).
//
// Thread safety: as the Client's (one request at a time); the handlers run on the thread that calls
// process_events(). The Client must outlive every RemoteVsmmu made on it.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "host/handles.hpp"
#include "nesting/virtual_smmu.hpp"
#include "nesting/vsmmu_endpoint.hpp"
#include "service/client/client.hpp"
#include "smmu/register_file.hpp"

namespace vsmmu::service {

class RemoteVsmmu final : public nesting::VsmmuEndpoint {
 public:
  // CREATE_VSMMU, then an eventfd (EFD_NONBLOCK | EFD_CLOEXEC) for each of the eventq and gerror lines,
  // registered with SET_IRQ. A failure leaves nothing in the daemon.
  static Result<std::unique_ptr<RemoteVsmmu>> create(Client& client, const VsmmuOptions& options,
                                                     const RemoteDevice& device);
  // DESTROY_VSMMU; a failure (the connection gone, say) is logged.
  ~RemoteVsmmu() override;

  std::uint32_t handle() const { return handle_; }

  // ---- the guest's side
  Result<std::uint64_t> mmio_read(std::uint64_t offset, unsigned size) override;
  Result<void> mmio_write(std::uint64_t offset, std::uint64_t value, unsigned size) override;
  // Called from process_events() when `line`'s eventfd had fired (eventq and gerror only).
  void set_irq_handler(smmu::Irq line, std::function<void()> handler);
  // The eventfd the daemon signals for `line`, or -1 (cmd_sync, priq): a VMM may hand it to KVM as an irqfd.
  int irq_fd(smmu::Irq line) const;
  // As VirtualSmmu::set_msi_handler: the vSMMU's MSIs outside guest RAM (with the MSI wish), which the daemon sends
  // as MSI messages (kFeatureMsi). Called from process_events() for those the Client has received for this vSMMU
  // (its socket, Client::socket_fd(), is readable when one waits).
  void set_msi_handler(nesting::VirtualSmmu::MsiHandler handler);
  // As VirtualSmmu::set_notice_handler: the vSMMU's notices for the operator, which the daemon sends as NOTICE
  // messages (kFeatureNotice; it logs them too). Called from process_events() for those the Client has received
  // for this vSMMU; without a handler they are logged at warning.
  void set_notice_handler(nesting::NoticeHandler handler) override;

  // ---- the VMM's side
  Result<void> add_device(const RemoteDevice& device);
  Result<void> remove_device(std::uint32_t vsid);
  // The eventq and gerror eventfds.
  std::vector<int> event_fds() const override;
  // Drains the eventfds and calls the notice handler, the handlers of the lines that fired, then the MSI handler;
  // returns 0 (the daemon writes the event records into guest RAM itself).
  Result<std::size_t> process_events() override;
  // The daemon's figures (STATS); if it cannot be asked, the last figures it gave, and a logged warning.
  nesting::VirtualSmmuStats stats() const override;
  const nesting::GuestIdRegisters& id_registers() const override { return ids_; }
  // SAVE_STATE / LOAD_STATE (docs/migration.md).
  Result<std::vector<std::byte>> save_state() override;
  Result<void> load_state(std::span<const std::byte> state) override;
  // The host objects the vSMMU holds now, from the daemon's STATS.
  Result<std::uint64_t> host_objects() const;

 private:
  static constexpr std::array<smmu::Irq, 2> kLines = {smmu::Irq::eventq, smmu::Irq::gerror};

  RemoteVsmmu(Client& client, const CreateReply& created);

  Client& client_;
  const std::uint32_t handle_;
  const nesting::GuestIdRegisters ids_;
  std::array<host::UniqueFd, kLines.size()> irq_fds_;
  std::array<std::function<void()>, kLines.size()> handlers_;
  nesting::VirtualSmmu::MsiHandler msi_handler_;
  nesting::NoticeHandler notice_handler_;
  std::mutex handlers_mu_;
  mutable std::mutex stats_mu_;
  mutable nesting::VirtualSmmuStats last_stats_;
};

}  // namespace vsmmu::service
