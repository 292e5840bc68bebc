// The simulated host's GICv3 ITS as far as a device sees it: the doorbell a device's MSI is written to, in the
// host-physical address space. An ITS has two 64 KiB frames (Arm IHI 0069 12.19): the control frame at its base
// (GITS_CTLR, the command queue, ... - not modelled) and the translation frame after it, whose GITS_TRANSLATER
// (frame offset 0x40, so base + 0x10040) takes an MSI: the written value is the EventID, the DeviceID comes
// with the write from the interconnect (for a device behind an SMMU, its StreamID through the IORT's ID
// mappings; identity here). The doorbell counts what it receives by (DeviceID, EventID); it does not model the
// ITS's device and interrupt translation tables (MAPD/MAPTI) nor the LPI it would raise.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <utility>

namespace vsmmu::host::sim {

class ItsDoorbell {
 public:
  static constexpr std::uint64_t kFrameBytes = 0x10000;               // each of the two ITS frames (64 KiB)
  static constexpr std::uint64_t kTranslationFrame = kFrameBytes;     // GITS_TRANSLATER's frame, from the base
  static constexpr std::uint64_t kGitsTranslater = 0x40;              // in the translation frame
  static constexpr std::uint64_t kQemuVirtBase = 0x08080000;          // QEMU virt's VIRT_GIC_ITS

  explicit ItsDoorbell(std::uint64_t its_base) : base_(its_base) {}

  std::uint64_t base() const { return base_; }
  // The translation frame, the only part a device can reach.
  std::uint64_t frame_pa() const { return base_ + kTranslationFrame; }
  // GITS_TRANSLATER: the address a host's MSI is composed from.
  std::uint64_t translater_pa() const { return frame_pa() + kGitsTranslater; }
  // Whether [pa, pa + len) overlaps the translation frame.
  bool overlaps(std::uint64_t pa, std::uint64_t len) const {
    return len && pa < frame_pa() + kFrameBytes && pa + (len - 1) >= frame_pa();
  }
  bool inside(std::uint64_t pa, std::uint64_t len) const {
    return len && pa >= frame_pa() && len <= kFrameBytes && pa - frame_pa() <= kFrameBytes - len;
  }

  // A write by `device_id` into the translation frame. GITS_TRANSLATER takes 16- and 32-bit writes (IHI 0069
  // 12.19.4): the value, zero-extended, is the EventID, and the MSI is delivered. Other writes in the frame are
  // ignored (WI), as its other offsets are reserved.
  void write(std::uint32_t device_id, std::uint64_t pa, std::span<const std::byte> data);

  // A write into the frame that carries no DeviceID (not a device's DMA): ignored.
  void write_without_device(std::uint64_t pa, std::uint64_t bytes);

  // MSIs delivered by (DeviceID, EventID), and in all.
  std::uint64_t delivered(std::uint32_t device_id, std::uint32_t event_id) const;
  std::uint64_t delivered() const { return total_; }
  // Writes into the frame that were not an MSI (wrong offset or size).
  std::uint64_t ignored() const { return ignored_; }

 private:
  std::uint64_t base_;
  std::map<std::pair<std::uint32_t, std::uint32_t>, std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  std::uint64_t ignored_ = 0;
};

}  // namespace vsmmu::host::sim
