// The vSMMU in a device tree (Linux bindings iommu/arm,smmu-v3.yaml and pci/pci-iommu.txt), written
// with libfdt and read back with dtc, and the inspection of a host's tree.
#include <gtest/gtest.h>

#include <algorithm>

#include "acpi/devicetree.hpp"
#include "acpi/files.hpp"
#include "fixtures.hpp"

namespace vsmmu::acpi::dt {
namespace {

using test::Bytes;

VsmmuSpec qemu_like_spec() {
  VsmmuSpec s;
  s.base = 0x9050000;
  s.irqs = {{"eventq", 106}, {"priq", 107}, {"cmdq-sync", 109}, {"gerror", 108}};
  s.iommu_map = {{0x0, 0x0, 0x100}, {0x200, 0x1000, 0x80}};
  s.msi_windows = {{0x8000000, 0x100000}};  // arm-smmu-v3's IOMMU_RESV_SW_MSI, as the host reports it
  return s;
}

// A base tree shaped like QEMU virt's: a GIC with three interrupt cells as the root's interrupt
// parent, and an ECAM PCIe host.
constexpr const char* kBaseDts = R"(/dts-v1/;
/ {
	interrupt-parent = <0x8002>;
	#size-cells = <0x02>;
	#address-cells = <0x02>;
	compatible = "linux,dummy-virt";
	intc@8000000 {
		phandle = <0x8002>;
		interrupt-controller;
		#interrupt-cells = <0x03>;
		compatible = "arm,gic-v3";
		reg = <0x00 0x8000000 0x00 0x10000 0x00 0x80a0000 0x00 0xf60000>;
	};
	pcie@10000000 {
		compatible = "pci-host-ecam-generic";
		device_type = "pci";
		#address-cells = <0x03>;
		#size-cells = <0x02>;
		reg = <0x40 0x10000000 0x00 0x10000000>;
	};
};
)";

// dtc's text for a blob ("dtc -I dtb -O dts").
std::string decompile(const Bytes& blob) {
  const std::string dir = test::temp_dir();
  EXPECT_TRUE(write_file(dir + "/t.dtb", blob));
  const auto r = test::run(std::string("'") + VSMMU_DTC + "' -I dtb -O dts '" + dir + "/t.dtb'");
  EXPECT_EQ(r.status, 0) << r.out;
  return r.out;
}

Bytes compile(const std::string& dts) {
  const std::string dir = test::temp_dir();
  const std::vector<std::uint8_t> text(dts.begin(), dts.end());
  EXPECT_TRUE(write_file(dir + "/t.dts", text));
  const auto r = test::run(std::string("'") + VSMMU_DTC + "' -I dts -O dtb -o '" + dir + "/t.dtb' '" + dir + "/t.dts'");
  EXPECT_EQ(r.status, 0) << r.out;
  auto blob = read_file(dir + "/t.dtb");
  EXPECT_TRUE(blob);
  return blob ? *blob : Bytes{};
}

void expect_contains(const std::string& text, const std::string& what) {
  EXPECT_NE(text.find(what), std::string::npos) << "missing:\n" << what << "\nin:\n" << text;
}

// The property lines of the top-level node `name` in dtc's output, sorted (dtc prints a blob's
// properties in reverse order, which says nothing about the tree).
std::vector<std::string> properties(const std::string& dts, const std::string& name) {
  const std::string open = "\n\t" + name + " {\n";
  auto begin = dts.find(open);
  if (begin == std::string::npos) {
    ADD_FAILURE() << "no node " << name << " in:\n" << dts;
    return {};
  }
  begin += open.size();
  const auto end = dts.find("\n\t};\n", begin);
  std::vector<std::string> lines;
  std::string line;
  for (std::size_t i = begin; i <= end && i < dts.size(); ++i) {
    if (dts[i] == '\n') {
      if (line.rfind("\t\t", 0) == 0) lines.push_back(line.substr(2));
      line.clear();
    } else {
      line += dts[i];
    }
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(DeviceTree, NewTreeHoldsTheVsmmuAndTheIommuMap) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  auto blob = add_vsmmu({}, qemu_like_spec());
  ASSERT_TRUE(blob) << blob.error().to_string();
  const std::string dts = decompile(*blob);
  // Interrupts are <GIC_SPI (0) GSIV-32 IRQ_TYPE_EDGE_RISING (1)>; the names in binding order.
  EXPECT_EQ(properties(dts, "smmuv3@9050000"), sorted({
                "compatible = \"arm,smmu-v3\";",
                "reg = <0x00 0x9050000 0x00 0x20000>;",
                "interrupts = <0x00 0x4a 0x01 0x00 0x4b 0x01 0x00 0x4d 0x01 0x00 0x4c 0x01>;",
                "interrupt-names = \"eventq\\0priq\\0cmdq-sync\\0gerror\";",
                "#iommu-cells = <0x01>;",
                "phandle = <0x01>;",
                "dma-coherent;",
            }));
  // pci-iommu.txt: <rid-base iommu-phandle iommu-base length>. The host names the MSI window's reservation
  // (memory-region), whose iommu-addresses name the host back: reserved-memory.yaml.
  EXPECT_EQ(properties(dts, "pcie"), sorted({"iommu-map = <0x00 0x01 0x00 0x100 0x200 0x01 0x1000 0x80>;",
                                             "phandle = <0x02>;", "memory-region = <0x03>;"}));
  // The host's MSI window, reg equal to its IOVA: an identity (IOMMU_RESV_DIRECT) region for the guest's
  // stage 1 (drivers/iommu/of_iommu.c of_iommu_get_resv_regions, iommu_resv_region_get_type).
  expect_contains(dts, "\treserved-memory {\n\t\tranges;\n\t\t#size-cells = <0x02>;\n\t\t#address-cells = <0x02>;\n\n"
                       "\t\tmsi-window@8000000 {\n\t\t\tphandle = <0x03>;\n\t\t\tno-map;\n"
                       "\t\t\tiommu-addresses = <0x02 0x00 0x8000000 0x00 0x100000>;\n"
                       "\t\t\treg = <0x00 0x8000000 0x00 0x100000>;\n");
  expect_contains(dts, "\t#address-cells = <0x02>;\n");
  expect_contains(dts, "\t#size-cells = <0x02>;\n");
}

TEST(DeviceTree, ExistingTreeGetsTheVsmmuUnderTheRootAndTheMapOnItsEcamHost) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  auto spec = qemu_like_spec();
  spec.irqs = {{"eventq", 106}, {"gerror", 108}};  // only the lines used
  spec.dma_coherent = false;
  auto blob = add_vsmmu(compile(kBaseDts), spec);
  ASSERT_TRUE(blob) << blob.error().to_string();
  const std::string dts = decompile(*blob);
  // Only the lines used; a fresh phandle above the GIC's; no dma-coherent when asked.
  EXPECT_EQ(properties(dts, "smmuv3@9050000"), sorted({
                "compatible = \"arm,smmu-v3\";",
                "reg = <0x00 0x9050000 0x00 0x20000>;",
                "interrupts = <0x00 0x4a 0x01 0x00 0x4c 0x01>;",
                "interrupt-names = \"eventq\\0gerror\";",
                "#iommu-cells = <0x01>;",
                "phandle = <0x8003>;",
            }));
  const auto pcie = properties(dts, "pcie@10000000");
  EXPECT_NE(std::find(pcie.begin(), pcie.end(), "iommu-map = <0x00 0x8003 0x00 0x100 0x200 0x8003 0x1000 0x80>;"),
            pcie.end())
      << ::testing::PrintToString(pcie);
  EXPECT_NE(std::find(pcie.begin(), pcie.end(), "compatible = \"pci-host-ecam-generic\";"), pcie.end());
  EXPECT_NE(std::find(pcie.begin(), pcie.end(), "memory-region = <0x8005>;"), pcie.end())
      << ::testing::PrintToString(pcie);
  EXPECT_NE(std::find(pcie.begin(), pcie.end(), "phandle = <0x8004>;"), pcie.end());
  expect_contains(dts, "iommu-addresses = <0x8004 0x00 0x8000000 0x00 0x100000>;");
  // The GIC and everything else survived.
  EXPECT_EQ(properties(dts, "intc@8000000").size(), 5u);
  expect_contains(dts, "compatible = \"linux,dummy-virt\";");
}

TEST(DeviceTree, GenerationRefusesWhatTheBindingForbids) {
  auto expect_refused = [](const Bytes& base, VsmmuSpec spec, const std::string& text) {
    auto blob = add_vsmmu(base, spec);
    ASSERT_FALSE(blob);
    EXPECT_NE(blob.error().message.find(text), std::string::npos) << blob.error().message;
  };
  auto s = qemu_like_spec();
  s.irqs.push_back({"combined", 110});
  expect_refused({}, s, "'combined' is the SMMU's only line");
  s = qemu_like_spec();
  s.irqs[0].gsiv = 20;  // a PPI, not an SPI
  expect_refused({}, s, "eventq GSIV 20 is not a GIC SPI");
  s = qemu_like_spec();
  s.msi_windows.clear();  // no default: the host says where its doorbell is mapped
  expect_refused({}, s, "need the host's MSI window");
  s = qemu_like_spec();
  s.irqs[0].name = "events";
  expect_refused({}, s, "'events' is not one of");
  s = qemu_like_spec();
  s.irqs.clear();
  expect_refused({}, s, "has no interrupts");
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const Bytes base = compile(kBaseDts);
  s = qemu_like_spec();
  s.pcie_path = "/pcie@20000000";
  expect_refused(base, s, "no node at /pcie@20000000");
  auto twice = add_vsmmu(base, qemu_like_spec());
  ASSERT_TRUE(twice);
  expect_refused(*twice, qemu_like_spec(), "already has /smmuv3@9050000");
  std::string no_parent = kBaseDts;
  no_parent.erase(no_parent.find("\tinterrupt-parent = <0x8002>;\n"), 31);
  expect_refused(compile(no_parent), qemu_like_spec(), "no interrupt-parent");
}

// The generated blob is pinned (tests/data/dt), and seeds the device-tree fuzz target.
TEST(DeviceTree, GoldenNewTree) {
  auto blob = add_vsmmu({}, qemu_like_spec());
  ASSERT_TRUE(blob);
  test::expect_golden("dt/vsmmu-new-tree.dtb", *blob);
}

TEST(DeviceTree, GenerationRefusesABrokenBaseTree) {
  auto blob = add_vsmmu({}, qemu_like_spec());
  ASSERT_TRUE(blob);
  Bytes broken = *blob;
  broken.resize(broken.size() - 8);  // the header's totalsize now overshoots
  auto r = add_vsmmu(broken, qemu_like_spec());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("the base tree is not a sound flattened device tree"), std::string::npos)
      << r.error().message;
}

TEST(DeviceTree, InspectReadsBackWhatGenerationWrote) {
  auto blob = add_vsmmu({}, qemu_like_spec());
  ASSERT_TRUE(blob);
  auto r = inspect(*blob);
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(r->problems.empty()) << r->problems.front().message;
  ASSERT_EQ(r->smmus.size(), 1u);
  const auto& s = r->smmus[0];
  EXPECT_EQ(s.path, "/smmuv3@9050000");
  EXPECT_EQ(s.phandle, 1u);
  EXPECT_TRUE(s.dma_coherent);
  EXPECT_EQ(s.iommu_cells, 1u);
  EXPECT_EQ(s.reg, (std::vector<std::pair<std::uint64_t, std::uint64_t>>{{0x9050000, 0x20000}}));
  EXPECT_EQ(s.interrupt_names, (std::vector<std::string>{"eventq", "priq", "cmdq-sync", "gerror"}));
  ASSERT_EQ(r->hosts.size(), 1u);
  EXPECT_EQ(r->hosts[0].path, "/pcie");
  ASSERT_EQ(r->hosts[0].iommu_map.size(), 2u);
  const auto& e = r->hosts[0].iommu_map[1];
  EXPECT_EQ(e.rid_base, 0x200u);
  EXPECT_EQ(e.target, "/smmuv3@9050000");
  EXPECT_EQ(e.sid_base, 0x1000u);
  EXPECT_EQ(e.length, 0x80u);
}

TEST(DeviceTree, InspectNamesEveryProblemLinuxWouldHave) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const std::string dts = R"(/dts-v1/;
/ {
	#address-cells = <2>;
	#size-cells = <2>;
	smmu@2b400000 {
		compatible = "arm,smmu-v3";
		reg = <0x0 0x2b400000 0x0 0x20000>;
		interrupt-names = "eventq", "event";
		#iommu-cells = <2>;
		phandle = <0x10>;
	};
	pcie@40000000 {
		iommu-map = <0x0 0x10 0x0 0x100>, <0x80 0x10 0x1000 0x100>, <0x200 0x99 0x0 0x10>, <0x300 0x10 0x0 0x0>;
	};
	pcie@50000000 {
		iommu-map = <0x0 0x10 0x0>;
	};
};
)";
  auto r = inspect(compile(dts));
  ASSERT_TRUE(r);
  std::vector<std::string> messages;
  for (const auto& p : r->problems) messages.push_back(p.path + ": " + p.message);
  const std::vector<std::string> expected = {
      "/smmu@2b400000: no dma-coherent",
      "/smmu@2b400000: #iommu-cells is 2",
      "/smmu@2b400000: interrupt name 'event' is not one of",
      "/pcie@40000000: iommu-map entry at RID 0x0 points at /smmu@2b400000, which has 2 #iommu-cells",
      "/pcie@40000000: iommu-map entry at RID 0x80 points at /smmu@2b400000, which has 2 #iommu-cells",
      "/pcie@40000000: iommu-map entries at RID 0x0 and 0x80 overlap",
      "/pcie@40000000: iommu-map entry at RID 0x200 names phandle 0x99, which no node has",
      "/pcie@40000000: iommu-map entry at RID 0x300 points at /smmu@2b400000",
      "/pcie@40000000: iommu-map entry at RID 0x300 has length 0",
      "/pcie@50000000: iommu-map is 12 bytes, not a whole number of 16-byte",
  };
  ASSERT_EQ(messages.size(), expected.size()) << ::testing::PrintToString(messages);
  for (std::size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(messages[i].rfind(expected[i], 0), 0u) << messages[i] << "\nexpected to start with\n" << expected[i];
}

TEST(DeviceTree, InspectRefusesWhatIsNotADeviceTree) {
  auto blob = add_vsmmu({}, qemu_like_spec());
  ASSERT_TRUE(blob);
  Bytes text = test::qemu_virt_iort();  // an ACPI table is not a .dtb
  auto r = inspect(text);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EINVAL);
  EXPECT_NE(r.error().message.find("not a sound flattened device tree"), std::string::npos);
  // Every truncation and byte flip of a valid blob is refused or inspected, never read out of bounds.
  for (std::size_t len = 0; len < blob->size(); ++len) {
    auto cut = inspect(std::span(*blob).first(len));
    EXPECT_FALSE(cut) << "a blob cut to " << len << " bytes was accepted";
  }
  for (std::size_t i = 0; i < blob->size(); ++i) {
    Bytes bad = *blob;
    bad[i] ^= 0xff;
    (void)inspect(bad);
  }
}

// A blob dt_fuzz found: FDT format version 4 made libfdt 1.6's fdt_check_full read through NULL. Versions
// before 16 are refused before libfdt looks at the structure (Devicetree Specification 5.2: version 17,
// last_comp_version 16; Linux's early FDT code requires version >= 16).
TEST(DeviceTree, InspectRefusesPreVersion16BlobsBeforeLibfdtWalksThem) {
  Bytes blob = test::read_golden("dt/fuzz-crash-version4.dtb");
  ASSERT_GE(blob.size(), 40u);
  auto r = inspect(blob);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EINVAL);
  EXPECT_NE(r.error().message.find("format version 4 predates 16"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace vsmmu::acpi::dt
