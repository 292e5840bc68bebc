// The simulated kernel, MSIs of an assigned device: VFIO_DEVICE_SET_IRQS on the MSI index
// (drivers/vfio/pci/vfio_pci_intrs.c vfio_msi_enable), the ITS's EventIDs (drivers/irqchip/irq-gic-v3-its.c),
// the software MSI mapping (drivers/iommu/dma-iommu.c iommu_dma_prepare_msi, iommu_dma_compose_msi_msg;
// drivers/iommu/iommufd/driver.c iommufd_sw_msi, iommufd_sw_msi_install; device.c iommufd_group_setup_msi),
// and a device raising one: a DMA write that the SMMU translates like any other and the ITS takes as an MSI.
#include <cstring>

#include "base/log.hpp"
#include "base/try.hpp"
#include "host/sim/sim_host.hpp"
#include "host/sim/sim_state.hpp"

namespace vsmmu::host::sim {

namespace {
constexpr const char* kSetIrqs = "VFIO_DEVICE_SET_IRQS";
constexpr unsigned kMaxMsiVectors = 32;  // PCI MSI: Multiple Message Capable tops out at 32 vectors
}  // namespace

ObjectId SimHost::State::paging_of(ObjectId hwpt_id) {
  if (get<HwptPagingObj>(hwpt_id)) return hwpt_id;
  return get<ViommuObj>(get<HwptNestedObj>(hwpt_id)->viommu)->parent;
}

Result<void> SimHost::State::install_sw_msi(ObjectId paging_id, const char* call) {
  auto& p = *get<HwptPagingObj>(paging_id);
  if (p.present_sw_msi) return {};
  // iommu_map(domain, sw_msi_start + pgoff * PAGE_SIZE, msi_addr & PAGE_MASK, PAGE_SIZE, IOMMU_WRITE |
  // IOMMU_READ | IOMMU_MMIO): one ITS here, so page 0 of the window.
  const std::uint64_t page = mem.its().translater_pa() & ~(kPageSize - 1);
  const std::uint64_t at = hw.smmus[p.smmu].msi_window.start;  // the SMMU's IOMMU_RESV_SW_MSI window
  if (auto r = p.domain->map(at, page, kPageSize, true, true, false); !r)
    return fail(r.error().err, call, "mapping the ITS doorbell page {:#x} at IOVA {:#x} of paging HWPT {} failed: {}",
                page, at, paging_id, r.error().message);
  p.present_sw_msi = true;
  return {};
}

namespace {

// The bound device named `device` (a profile device's name or BDF).
Result<std::pair<ObjectId, DeviceObj*>> bound_device(SimHost::State& s, std::string_view device, const char* call) {
  auto spec = s.hw.find_device(device);
  if (!spec) return fail(ENOENT, call, "no device \"{}\" in hardware profile \"{}\"", device, s.hw.name);
  if (!s.bound[*spec])
    return fail(EINVAL, call, "device {} is not bound: its VFIO cdev is not open, so nothing can set its "
                "interrupts; bind it first", s.hw.devices[*spec].name);
  return std::pair{*s.bound[*spec], s.get<DeviceObj>(*s.bound[*spec])};
}

}  // namespace

Result<std::vector<MsiMessage>> SimHost::enable_msi(std::string_view device, unsigned vectors) {
  std::lock_guard lock(s_->mu);
  VSMMU_TRY_ASSIGN(auto found, bound_device(*s_, device, kSetIrqs));
  auto [id, d] = found;
  const std::string desc = s_->describe_device(*d, id);
  if (vectors == 0 || vectors > kMaxMsiVectors)
    return fail(EINVAL, kSetIrqs, "{}: {} MSI vectors asked; its MSI capability offers 1 to {}", desc, vectors,
                kMaxMsiVectors);
  if (!d->msi.empty())
    return fail(EINVAL, kSetIrqs, "{}: MSIs are already enabled with {} vectors; disable them first (count 0), as a "
                "VMM does to change the count", desc, d->msi.size());
  // iommu_dma_prepare_msi -> domain->sw_msi (iommufd_sw_msi) for the domain the device is attached to now.
  std::uint64_t address = s_->mem.its().translater_pa();
  if (d->attached) {
    VSMMU_TRY(s_->install_sw_msi(s_->paging_of(*d->attached), kSetIrqs));
    d = s_->get<DeviceObj>(id);
    d->required_sw_msi = true;
    // iommu_dma_compose_msi_msg: the window's page, with the doorbell's offset in its page.
    address = s_->hw.smmus[s_->get<HwptPagingObj>(s_->paging_of(*d->attached))->smmu].msi_window.start +
              (address & (kPageSize - 1));
  }
  d->msi.clear();
  for (unsigned v = 0; v < vectors; ++v) d->msi.push_back(MsiMessage{address, v});  // its_alloc_device_irq: 0..n-1
  log::debug("sim.msi", "{}: {} MSI vectors at {:#x}", desc, vectors, address);
  return d->msi;
}

Result<void> SimHost::disable_msi(std::string_view device) {
  std::lock_guard lock(s_->mu);
  VSMMU_TRY_ASSIGN(auto found, bound_device(*s_, device, kSetIrqs));
  found.second->msi.clear();
  return {};
}

Result<std::vector<MsiMessage>> SimHost::msi_messages(std::string_view device) const {
  std::lock_guard lock(s_->mu);
  VSMMU_TRY_ASSIGN(auto found, bound_device(*s_, device, "sim.msi"));
  return found.second->msi;
}

Result<MsiOutcome> SimHost::raise_msi(std::string_view engine, unsigned vector) {
  constexpr const char* kWhere = "sim.msi";
  std::lock_guard lock(s_->mu);
  auto e = s_->hw.find_dma_engine(engine);
  if (!e) return fail(ENOENT, kWhere, "no DMA engine \"{}\" in hardware profile \"{}\"", engine, s_->hw.name);
  const auto& dev = s_->hw.devices[s_->hw.dma_engines[*e].device];
  const auto bound = s_->bound[s_->hw.dma_engines[*e].device];
  const DeviceObj* d = bound ? s_->get<DeviceObj>(*bound) : nullptr;
  if (!d || d->msi.empty())
    return fail(EINVAL, kWhere, "device {} of engine \"{}\" has its MSIs off; enable them first (enable_msi)",
                dev.name, engine);
  if (vector >= d->msi.size())
    return fail(EINVAL, kWhere, "device {} has MSI vectors 0 to {} enabled; vector {} is not", dev.name,
                d->msi.size() - 1, vector);
  MsiOutcome out;
  out.message = d->msi[vector];
  std::array<std::byte, 4> data{};
  std::memcpy(data.data(), &out.message.data, 4);  // little-endian, as the PCI MSI Message Data is written
  const std::uint64_t before = s_->mem.its().delivered();
  VSMMU_TRY_ASSIGN(out.dma, s_->dma(engine, out.message.address, {}, data, true, std::nullopt));
  out.delivered = s_->mem.its().delivered() != before;
  return out;
}

std::uint64_t SimHost::its_translater() const {
  std::lock_guard lock(s_->mu);
  return s_->mem.its().translater_pa();
}

std::uint64_t SimHost::msis_delivered(std::uint32_t device_id, std::uint32_t event_id) const {
  std::lock_guard lock(s_->mu);
  return s_->mem.its().delivered(device_id, event_id);
}

std::uint64_t SimHost::msis_delivered() const {
  std::lock_guard lock(s_->mu);
  return s_->mem.its().delivered();
}

}  // namespace vsmmu::host::sim
