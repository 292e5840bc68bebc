// A one-line notice for the VMM's operator: something the vSMMU saw that the guest is not (or not only) told,
// and that its operator should act on (docs/interrupts.md "When a device's MSIs fault"). The kind tells notices
// apart; the protocol's NOTICE message carries it as is (docs/protocol.md "NOTICE (14)").
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace vsmmu::nesting {

enum class NoticeKind : std::uint32_t {
  // A device's DMA faulted in the guest's stage 1 at an address in its host MSI window: its MSIs are lost.
  // Once per device.
  msi_window_fault = 1,
};

struct Notice {
  NoticeKind kind = NoticeKind::msi_window_fault;
  std::uint32_t vsid = 0;  // the device it concerns (the guest's StreamID)
  std::string text;        // one line, for a log
};

using NoticeHandler = std::function<void(const Notice&)>;

}  // namespace vsmmu::nesting
