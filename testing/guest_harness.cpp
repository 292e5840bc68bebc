#include "testing/guest_harness.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/try.hpp"
#include "smmu/driver/commands.hpp"

namespace vsmmu::testkit {

using namespace smmu;
using namespace nesting;

namespace {
constexpr const char* kWhere = "guest";
constexpr std::uint64_t kPage = 4096;
}  // namespace

// The RAM a remote guest's driver, CD tables and page tables were built over: what it forwards to changes when
// the VM migrates (GuestHarness::migrate), as the guest's RAM does; the driver is pointed at the destination
// vSMMU itself (SmmuDriver::moved_to).
class GuestHarness::MovableRam final : public PhysicalMemory {
 public:
  explicit MovableRam(RegionMemory& to) : to_(&to) {}
  void replace(RegionMemory& to) { to_ = &to; }
  std::expected<void, BusFault> read(std::uint64_t pa, std::span<std::byte> out) const override {
    return to_->read(pa, out);
  }
  std::expected<void, BusFault> write(std::uint64_t pa, std::span<const std::byte> in) override {
    return to_->write(pa, in);
  }
  std::expected<bool, BusFault> compare_exchange64(std::uint64_t pa, std::uint64_t expected,
                                                   std::uint64_t desired) override {
    return to_->compare_exchange64(pa, expected, desired);
  }

 private:
  RegionMemory* to_;
};

GuestHarness::GuestHarness() = default;
GuestHarness::~GuestHarness() = default;

Result<std::unique_ptr<GuestHarness>> GuestHarness::create(host::Host& host, const GuestHarnessConfig& config) {
  const GuestRamLayout ram{config.ram_gpa, config.ram_size};
  VSMMU_TRY_ASSIGN(auto memory, GuestMemory::allocate(host, std::span(&ram, 1)));
  std::unique_ptr<GuestHarness> g(new GuestHarness());
  g->owned_memory_ = std::move(memory);
  g->memory_ = g->owned_memory_.get();
  VSMMU_TRY(g->start(config, config.ram_gpa, config.ram_size));
  return g;
}

Result<std::unique_ptr<GuestHarness>> GuestHarness::create_in(GuestMemory& memory, std::uint64_t gpa,
                                                              std::uint64_t size, const GuestHarnessConfig& config) {
  std::unique_ptr<GuestHarness> g(new GuestHarness());
  g->memory_ = &memory;
  VSMMU_TRY(g->start(config, gpa, size));
  return g;
}

Result<void> GuestHarness::start(const GuestHarnessConfig& config, std::uint64_t gpa, std::uint64_t size) {
  if (config.table_pool_size >= size)
    return fail(EINVAL, kWhere, "the table pool ({:#x} bytes) leaves no room for data in {:#x} bytes of RAM",
                config.table_pool_size, size);
  vsmmu_config_ = config.vsmmu;
  VSMMU_TRY_ASSIGN(auto v, VirtualSmmu::create(*memory_, config.vsmmu, config.devices));
  vsmmu_ = v.get();
  endpoint_ = std::move(v);
  view_ = &memory_->view();
  return start_driver(config, gpa, size);
}

Result<std::unique_ptr<GuestHarness>> GuestHarness::create_remote(std::unique_ptr<VsmmuEndpoint> endpoint,
                                                                  smmu::RegionMemory& ram, std::uint64_t gpa,
                                                                  std::uint64_t size, const GuestHarnessConfig& config) {
  if (config.table_pool_size >= size)
    return fail(EINVAL, kWhere, "the table pool ({:#x} bytes) leaves no room for data in {:#x} bytes of RAM",
                config.table_pool_size, size);
  if (!ram.contains(gpa, size)) return fail(EINVAL, kWhere, "guest RAM [{:#x}, +{:#x}) is not in the VMM's view", gpa, size);
  std::unique_ptr<GuestHarness> g(new GuestHarness());
  g->endpoint_ = std::move(endpoint);
  g->movable_ram_ = std::make_unique<MovableRam>(ram);
  g->view_ = g->movable_ram_.get();
  g->remote_ram_ = &ram;
  g->gpa_ = gpa;
  g->size_ = size;
  VSMMU_TRY(g->start_driver(config, gpa, size));
  return g;
}

Result<std::unique_ptr<VsmmuEndpoint>> GuestHarness::migrate(std::unique_ptr<VsmmuEndpoint> destination,
                                                             smmu::RegionMemory& ram) {
  if (!movable_ram_) return fail(EINVAL, kWhere, "only a guest made with create_remote migrates");
  if (!destination) return fail(EINVAL, kWhere, "no destination vSMMU");
  if (!ram.contains(gpa_, size_))
    return fail(EINVAL, kWhere, "guest RAM [{:#x}, +{:#x}) is not in the destination's view", gpa_, size_);
  if (auto diff = first_difference(endpoint_->id_registers(), destination->id_registers()))
    return fail(EINVAL, kWhere, "the destination vSMMU shows the guest other ID registers than the source: {}", *diff);
  movable_ram_->replace(ram);
  remote_ram_ = &ram;
  driver_->moved_to(*destination);
  return std::exchange(endpoint_, std::move(destination));
}

Result<void> GuestHarness::start_driver(const GuestHarnessConfig& config, std::uint64_t gpa, std::uint64_t size) {
  pool_.emplace(*view_, gpa, config.table_pool_size);
  data_next_ = gpa + config.table_pool_size;
  data_end_ = gpa + size;
  driver::Options options = config.driver;
  options.name = config.vsmmu.name;
  options.need_stage1 = true;
  const auto sid_bits = static_cast<unsigned>(endpoint_->id_registers().idr1.get(Idr1::SIDSIZE));
  std::uint32_t max_vsid = 0;
  for (const auto& d : config.devices) max_vsid = std::max(max_vsid, d.vsid);
  options.sid_bits = std::min(sid_bits, std::max<unsigned>(options.sid_bits, static_cast<unsigned>(std::bit_width(max_vsid))));
  VSMMU_TRY_ASSIGN(auto d, driver::SmmuDriver::start(*endpoint_, *view_, *pool_, options));
  driver_.emplace(std::move(d));
  return {};
}

Result<TableBuilder*> GuestHarness::address_space(std::uint16_t asid) {
  if (auto it = spaces_.find(asid); it != spaces_.end()) return it->second.get();
  auto s1 = std::make_unique<TableBuilder>(*view_, *pool_, Stage::s1, Granule::k4K, 48);
  VSMMU_TRY(s1->init());
  return spaces_.emplace(asid, std::move(s1)).first->second.get();
}

Result<void> GuestHarness::attach(std::uint32_t vsid, std::uint16_t asid, std::uint32_t ssid) {
  VSMMU_TRY_ASSIGN(auto s1, address_space(asid));
  return driver_->attach_stage1(vsid, ssid, asid, *s1);
}

Result<std::uint64_t> GuestHarness::alloc(std::uint64_t size) {
  const std::uint64_t rounded = (size + kPage - 1) & ~(kPage - 1);
  if (rounded == 0 || rounded > data_end_ - data_next_)
    return fail(ENOMEM, kWhere, "guest RAM for a {:#x}-byte buffer: {:#x} bytes left", size, data_end_ - data_next_);
  const std::uint64_t gpa = data_next_;
  data_next_ += rounded;
  std::ranges::fill(bytes(gpa, rounded), std::byte{0});
  return gpa;
}

std::span<std::byte> GuestHarness::bytes(std::uint64_t gpa, std::uint64_t size) {
  std::byte* p = remote_ram_ ? remote_ram_->host_pointer(gpa, size) : memory_->host_pointer(gpa, size);
  return p ? std::span(p, size) : std::span<std::byte>{};
}

Result<void> GuestHarness::map(std::uint16_t asid, std::uint64_t va, std::uint64_t gpa, std::uint64_t size,
                               const MapAttributes& attrs) {
  VSMMU_TRY_ASSIGN(auto s1, address_space(asid));
  return (s1)->map(va, gpa, size, attrs);
}

Result<void> GuestHarness::unmap(std::uint16_t asid, std::uint64_t va, std::uint64_t size, bool invalidate) {
  VSMMU_TRY_ASSIGN(auto s1, address_space(asid));
  VSMMU_TRY((s1)->unmap(va, size));
  if (!invalidate) return {};
  const auto cmds = driver::tlbi_range(driver::cmd_tlbi_nh_va(0, asid, 0), va, size, kPage, Granule::k4K,
                                       driver_->features().range_inv());
  return driver_->issue(cmds);
}

Result<void> GuestHarness::reload(const std::function<std::vector<DeviceSpec>()>& devices) {
  if (!vsmmu_) return fail(EINVAL, kWhere, "reload: only a harness with the vSMMU in process has one to move");
  VSMMU_TRY_ASSIGN(const auto state, vsmmu_->save_state());
  vsmmu_ = nullptr;
  endpoint_.reset();
  auto v = VirtualSmmu::restore(*memory_, vsmmu_config_, devices(), state);
  if (!v) return fail(v.error(), kWhere, "reload: the state of \"{}\" ({} bytes) onto a fresh vSMMU", vsmmu_config_.name,
                      state.size());
  vsmmu_ = v->get();
  endpoint_ = std::move(*v);
  driver_->moved_to(*endpoint_);
  return {};
}

Result<driver::DrainedEvents> GuestHarness::events() {
  VSMMU_TRY(endpoint_->process_events());
  return driver_->drain_events();
}

}  // namespace vsmmu::testkit
