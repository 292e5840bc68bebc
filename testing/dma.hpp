// A DMA master behind the model: a device with a StreamID (and optionally a SubstreamID) that reads and
// writes IOVA ranges. Every access goes through SmmuModel, so it is translated, cached, faulted and
// reported exactly as the SMMU would treat the device's transactions.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>

#include "base/try.hpp"
#include "smmu/model/smmu_model.hpp"

namespace vsmmu::testkit {

class DmaMaster {
 public:
  DmaMaster(smmu::model::SmmuModel& smmu, std::uint32_t sid, std::optional<std::uint32_t> ssid = std::nullopt,
            smmu::model::DmaAttributes attrs = {})
      : smmu_(smmu), stream_{sid, ssid, attrs} {}

  const smmu::model::DmaStream& stream() const { return stream_; }
  // The same device issuing another SubstreamID (or none).
  DmaMaster with_ssid(std::optional<std::uint32_t> ssid) const {
    return DmaMaster(smmu_, stream_.sid, ssid, stream_.attrs);
  }

  std::expected<void, smmu::model::DmaFault> read(std::uint64_t iova, std::span<std::byte> out) {
    return smmu_.dma_read(stream_, iova, out);
  }
  std::expected<void, smmu::model::DmaFault> write(std::uint64_t iova, std::span<const std::byte> in) {
    return smmu_.dma_write(stream_, iova, in);
  }
  // Little-endian 64-bit accesses, as a device's descriptor fetches and status writes are.
  std::expected<std::uint64_t, smmu::model::DmaFault> read64(std::uint64_t iova) {
    std::array<std::byte, 8> b{};
    VSMMU_TRY(read(iova, b));
    return std::bit_cast<std::uint64_t>(b);
  }
  std::expected<void, smmu::model::DmaFault> write64(std::uint64_t iova, std::uint64_t value) {
    auto b = std::bit_cast<std::array<std::byte, 8>>(value);
    return write(iova, b);
  }

 private:
  smmu::model::SmmuModel& smmu_;
  smmu::model::DmaStream stream_;
};

}  // namespace vsmmu::testkit
