// What a VMM holds of one vSMMU: the guest's MMIO accesses go in, host events are serviced into the guest's
// event queue, figures come out. VirtualSmmu implements it in process; a VMM (and the demo) is written against
// this, so another implementation (out of process, say) would need no change in the VMM.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "nesting/id_registers.hpp"
#include "nesting/notice.hpp"
#include "smmu/mmio.hpp"

namespace vsmmu::nesting {

struct VirtualSmmuStats;

class VsmmuEndpoint : public smmu::SmmuMmio {
 public:
  // The fds that become readable when the vSMMU has work: host events for the guest, or command-queue work an
  // access left for later (VirtualSmmuConfig::commands_per_access).
  virtual std::vector<int> event_fds() const = 0;
  // Moves every pending host event record into the guest's event queue and goes on with command-queue work
  // left over; returns how many event records were written.
  virtual Result<std::size_t> process_events() = 0;
  virtual VirtualSmmuStats stats() const = 0;
  virtual const GuestIdRegisters& id_registers() const = 0;
  // One-line notices for the VMM's operator (nesting/notice.hpp): the in-process vSMMU calls the handler itself,
  // the remote one from process_events() with those the daemon sent. Without a handler they are logged at warning.
  virtual void set_notice_handler(NoticeHandler handler) = 0;
  // Live migration: the vSMMU's state for a destination, and loading one into a vSMMU the guest has not
  // programmed yet (VirtualSmmu::save_state / load_state).
  virtual Result<std::vector<std::byte>> save_state() = 0;
  virtual Result<void> load_state(std::span<const std::byte> state) = 0;
};

}  // namespace vsmmu::nesting
