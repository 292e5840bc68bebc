#include "fixtures.hpp"

#include <cstdio>
#include <cstdlib>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include "acpi/bytes.hpp"
#include "acpi/files.hpp"

namespace vsmmu::acpi::test {

using namespace iort;

SmmuV3 qemu_virt_smmu() {
  SmmuV3 smmu;
  smmu.base = 0x9050000;
  smmu.flags = SmmuV3::kCohaccOverride;
  smmu.event_gsiv = 106;
  smmu.pri_gsiv = 107;
  smmu.gerr_gsiv = 108;
  smmu.sync_gsiv = 109;
  smmu.proximity_domain = 0;
  smmu.id_mapping_index = 0;
  return smmu;
}

Bytes qemu_virt_iort() {
  Builder b(TableIdentity{5, "BOCHS ", "BXPC    ", 1, "BXPC", 1});
  const auto its = b.its_group(1, 0, ItsGroup{{0}});
  const IdMapping to_its[] = {{0, 0xffff, 0, its, 0, 0}};
  const auto s = b.smmu_v3(4, 1, qemu_virt_smmu(), to_its);
  RootComplex rc;
  rc.memory = MemoryAccess{1, 0, MemoryAccess::kCoherency | MemoryAccess::kAttributes};
  rc.memory_address_limit = 64;
  const IdMapping to_smmu[] = {{0, 0xffff, 0, s, 0, 0}};
  b.root_complex(3, 2, rc, to_smmu);
  return b.finish().value();
}

GuestIort guest_two_smmus() {
  GuestIort g;
  g.smmus = {GuestSmmu{0x9050000, 106, 107, 108, 109, true, {}}, GuestSmmu{0x9070000, 110, 0, 112, 113, true, {}}};
  g.root_complexes = {GuestRootComplex{0, {{0x0, 0x100, 0x0, 0}, {0x200, 0x80, 0x1000, 1}}, false, false, 64}};
  g.msi_windows = {{0x8000000, 0x100000}};  // arm-smmu-v3's IOMMU_RESV_SW_MSI, as the host reports it
  return g;
}

Bytes all_node_types() {
  Builder b(TableIdentity{});
  const auto its = b.its_group(1, 0, ItsGroup{{0, 1}});
  Smmu v2;
  v2.base = 0x2b400000;
  v2.span = 0x10000;
  v2.model = 3;
  v2.flags = 1;
  v2.nsg_irpt = {40, 1};
  v2.nsg_cfg_irpt = {41, 1};
  v2.context_interrupts = {{42, 1}, {43, 1}};
  v2.pmu_interrupts = {{44, 0}};
  const IdMapping v2_maps[] = {{0, 0x7f, 0x8000, its, 0, 0}};
  const auto smmu = b.smmu(3, 1, v2, v2_maps);
  SmmuV3 v3;
  v3.base = 0x9050000;
  v3.flags = SmmuV3::kCohaccOverride | SmmuV3::kDeviceIdValid | (1u << SmmuV3::kHttuShift);
  v3.model = 0;
  v3.event_gsiv = 106;  // the other lines signal by MSI, through the DeviceID mapping below
  v3.proximity_domain = 0;
  v3.id_mapping_index = 1;
  const IdMapping v3_maps[] = {{0, 0xffff, 0, its, 0, 0}, {0, 0, 0x10000, its, IdMapping::kSingleMapping, 0}};
  const auto smmu3 = b.smmu_v3(5, 2, v3, v3_maps);
  NamedComponent nc;
  nc.node_flags = 1;
  nc.memory = MemoryAccess{1, 0, MemoryAccess::kCoherency};
  nc.memory_address_limit = 48;
  nc.device_name = "\\_SB_.PCI0.DMA0";  // 16 bytes with the NUL: 3 bytes of padding (iasl 20200925 rejects 0)
  const IdMapping nc_maps[] = {{0, 0, 0x20000, smmu3, IdMapping::kSingleMapping, 0}};
  b.named_component(4, 3, nc, nc_maps);
  RootComplex rc;
  rc.memory = MemoryAccess{1, 0, MemoryAccess::kCoherency | MemoryAccess::kAttributes | MemoryAccess::kCanwbs};
  rc.ats_attribute = RootComplex::kAtsSupported;
  rc.pci_segment = 0;
  rc.memory_address_limit = 64;
  rc.pasid_capabilities = 20;
  rc.flags = 0;
  const IdMapping rc_maps[] = {{0, 0xff, 0, smmu3, 0, 0}, {0x100, 0xff, 0x100, smmu, 0, 0}};
  b.root_complex(4, 4, rc, rc_maps);
  Pmcg pmcg;
  pmcg.page0_base = 0x9100000;
  pmcg.overflow_gsiv = 0;
  pmcg.node_reference = smmu3;
  pmcg.page1_base = 0x9110000;
  const IdMapping pmcg_maps[] = {{0, 0, 0x30000, its, IdMapping::kSingleMapping, 0}};
  b.pmcg(2, 5, pmcg, pmcg_maps);
  const IdMapping rmr_maps[] = {{0x40, 0x3, 0x40, smmu3, 0, 0}};
  b.rmr(3, 6, Rmr{0, {{0x80000000, 0x10000}, {0x80100000, 0x20000}}}, rmr_maps);
  return b.finish().value();
}

Platform platform(std::initializer_list<RcSpec> rcs, std::uint8_t table_revision) {
  TableIdentity id;
  id.revision = table_revision;
  Builder b(id);
  const auto its = b.its_group(1, 0, ItsGroup{{0}});
  const IdMapping to_its[] = {{0, 0xffff, 0, its, 0, 0}};
  Smmu v2;
  v2.base = 0x2b400000;
  v2.span = 0x10000;
  v2.nsg_irpt = {40, 1};
  v2.nsg_cfg_irpt = {41, 1};
  v2.context_interrupts = {{42, 1}};
  const auto smmu_v2 = b.smmu(3, 1, v2, to_its);
  SmmuV3 v3 = qemu_virt_smmu();
  const auto coherent = b.smmu_v3(4, 2, v3, to_its);
  v3.base = 0x9070000;
  v3.flags = 0;
  const auto noncoherent = b.smmu_v3(4, 3, v3, to_its);
  Platform p;
  std::uint32_t segment = 0;
  for (const auto& spec : rcs) {
    const std::uint32_t target = spec.behind == Behind::its       ? its
                                 : spec.behind == Behind::smmu_v2 ? smmu_v2
                                 : spec.behind == Behind::smmu_v3 ? coherent
                                                                  : noncoherent;
    RootComplex rc;
    rc.memory = MemoryAccess{spec.cca, 0, spec.cca == 1 ? MemoryAccess::kCoherency : std::uint8_t{0}};
    rc.pci_segment = segment;
    const IdMapping maps[] = {{0, 0xffff, 0, target, 0, 0}};
    p.rcs.push_back(b.root_complex(4, 10 + segment, rc, maps));
    ++segment;
  }
  p.table = b.finish().value();
  const auto report = parse(p.table).value();
  EXPECT_TRUE(report.problems.empty()) << report.problems.front().message;
  return p;
}

Bytes dangling_reference() {
  Bytes t = qemu_virt_iort();
  put(t, kQemuRc + ByteView(t).u32(kQemuRc + layout::kNodeMappingOffset) + layout::kMapOutputReference, 0x999, 4);
  fix_checksum(t);
  return t;
}

void put(Bytes& b, std::size_t offset, std::uint64_t value, unsigned width) { put_le(b, offset, value, width); }

void fix_checksum(Bytes& b) {
  b[iort::layout::kChecksum] = 0;
  b[iort::layout::kChecksum] = static_cast<std::uint8_t>(0x100 - byte_sum(b));
}

Run run(const std::string& command) {
  Run r;
  std::FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string temp_dir() {
  std::string tmpl = ::testing::TempDir() + "vsmmu-acpi-XXXXXX";
  if (!::mkdtemp(tmpl.data())) ADD_FAILURE() << "mkdtemp " << tmpl << " failed";
  return tmpl;
}

bool tool_present(const std::string& path, const char* name, const char* package) {
  if (!path.empty() && run("'" + path + "' -v >/dev/null 2>&1 || test -x '" + path + "'").status == 0) return true;
  ADD_FAILURE() << name << " is not installed (found at configure time: '" << path << "'); install the Debian package "
                << package << " (scripts/setup does) and reconfigure";
  return false;
}

void expect_golden(const std::string& name, const Bytes& bytes) {
  const std::string path = std::string(VSMMU_TEST_DATA) + "/" + name;
  if (const char* update = std::getenv("VSMMU_UPDATE_GOLDEN"); update && std::string(update) == "1") {
    ASSERT_TRUE(write_file(path, bytes)) << path;
    return;
  }
  auto golden = read_file(path);
  ASSERT_TRUE(golden) << golden.error().to_string() << " (regenerate with VSMMU_UPDATE_GOLDEN=1)";
  EXPECT_EQ(*golden, bytes) << name << " differs from the builder's output; if the change is intended, regenerate "
                            << "it with VSMMU_UPDATE_GOLDEN=1 and review the iasl disassembly";
}

Bytes read_golden(const std::string& name) {
  auto golden = read_file(std::string(VSMMU_TEST_DATA) + "/" + name);
  EXPECT_TRUE(golden) << name;
  return golden ? *golden : Bytes{};
}

}  // namespace vsmmu::acpi::test
