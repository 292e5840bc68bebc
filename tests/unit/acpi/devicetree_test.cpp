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
  ASSERT_EQ(r->iommus.size(), 1u);
  const auto& s = r->iommus[0];
  EXPECT_EQ(s.path, "/smmuv3@9050000");
  EXPECT_EQ(s.compatible, std::vector<std::string>{"arm,smmu-v3"});
  EXPECT_TRUE(s.smmu_v3);
  EXPECT_EQ(s.phandle, 1u);
  EXPECT_TRUE(s.available);
  EXPECT_TRUE(s.dma_coherent);
  EXPECT_EQ(s.iommu_cells, 1u);
  ASSERT_EQ(s.reg.size(), 1u);
  EXPECT_EQ(s.reg[0].address, 0x9050000u);
  EXPECT_EQ(s.reg[0].size, 0x20000u);
  EXPECT_EQ(s.reg[0].cpu_address, 0x9050000u);  // a child of the root: no bus to cross
  EXPECT_EQ(s.interrupt_names, (std::vector<std::string>{"eventq", "priq", "cmdq-sync", "gerror"}));
  ASSERT_EQ(r->devices.size(), 1u);
  EXPECT_EQ(r->devices[0].path, "/pcie");
  ASSERT_EQ(r->devices[0].iommu_map.size(), 2u);
  const auto& e = r->devices[0].iommu_map[1];
  EXPECT_EQ(e.rid_base, 0x200u);
  EXPECT_EQ(e.target, "/smmuv3@9050000");
  EXPECT_EQ(e.sid_base, 0x1000u);
  EXPECT_EQ(e.length, 0x80u);
  EXPECT_EQ(e.verdict, HostNesting::needs_s2fwb);
  // What we generate for a guest is a coherent SMMUv3: nesting there depends on the vSMMU's S2FWB.
  EXPECT_EQ(r->status(), HostNesting::needs_s2fwb);
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
	pcie@60000000 {
		iommu-map = <0x100 0x10 0x0 0x100>;
		iommu-map-mask = <0xff>;
	};
	dma@70000000 {
		iommus = <0x10 0x1 0x2>, <0x42 0x1>;
	};
};
)";
  auto r = inspect(compile(dts));
  ASSERT_TRUE(r);
  std::vector<std::string> messages;
  for (const auto& p : r->problems) messages.push_back(std::string(to_string(p.severity)) + " " + p.path + ": " + p.message);
  const std::vector<std::string> expected = {
      "error /smmu@2b400000: #iommu-cells is 2; arm,smmu-v3 takes exactly one cell",
      "warning /smmu@2b400000: no dma-coherent",
      "warning /smmu@2b400000: interrupt name 'event' is not one of",
      "warning /pcie@40000000: iommu-map entries at RID 0x0 and 0x80 overlap",
      "error /pcie@40000000: iommu-map entry at RID 0x200 names phandle 0x99, which no node has",
      "warning /pcie@40000000: iommu-map entry at RID 0x300 has length 0",
      "error /pcie@50000000: iommu-map is 12 bytes, not a whole number of 16-byte",
      // drivers/of/base.c of_map_id: a base with bits the mask drops never matches; Linux refuses the map.
      "error /pcie@60000000: iommu-map entry at RID 0x100 has bits outside iommu-map-mask 0xff",
      // The specifier is <stream-ID mask> (2 cells, as this node claims); the next phandle names nothing.
      "error /dma@70000000: iommus names phandle 0x42, which no node has",
  };
  ASSERT_EQ(messages.size(), expected.size()) << ::testing::PrintToString(messages);
  for (std::size_t i = 0; i < expected.size(); ++i)
    EXPECT_EQ(messages[i].rfind(expected[i], 0), 0u) << messages[i] << "\nexpected to start with\n" << expected[i];
  EXPECT_EQ(r->count(Severity::error), 5u);
  EXPECT_EQ(r->status(), HostNesting::malformed);
  ASSERT_EQ(r->devices.size(), 4u);
  EXPECT_EQ(r->devices[3].iommus[0].cells, (std::vector<std::uint32_t>{1, 2}));
  EXPECT_EQ(r->devices[3].verdict, HostNesting::malformed);
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

// A blob dt_fuzz found: a property whose length is 0xfffffff4 (-12) sends bookworm's libfdt 1.6.1
// fdt_next_tag back to the tag it started from, so fdt_check_full never returned. The structure block's
// property lengths are checked first (Devicetree Specification 5.4): refused, naming the property.
TEST(DeviceTree, InspectRefusesAPropertyLongerThanTheStructureBlock) {
  Bytes blob = test::read_golden("dt/fuzz-hang-property-length.dtb");
  auto r = inspect(blob);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, EINVAL);
  EXPECT_NE(r.error().message.find("the property at byte 0x68 (structure block offset 0x30) claims a 4294967284-byte "
                                   "value, past the structure block's end 668 bytes on"),
            std::string::npos)
      << r.error().message;
}

// The shapes of real host trees (Linux's arch/arm64/boot/dts): what `vsmmu dt check` concludes from each.

// A tree under a root with two address and two size cells, as arm64 boards have.
Report host_tree(const std::string& body) {
  const Bytes blob = compile("/dts-v1/;\n/ {\n\t#address-cells = <2>;\n\t#size-cells = <2>;\n" + body + "};\n");
  auto r = inspect(blob);
  EXPECT_TRUE(r) << r.error().to_string();
  return r ? *r : Report{};
}

// An arm,smmu-v3 node "smmu: iommu@UNIT" with reg (in its parent's cells), #iommu-cells = <1> and `extra`
// properties (dtc does not mind the indentation).
std::string smmu_v3(const std::string& unit, const std::string& reg, const std::string& extra) {
  return "\tsmmu: iommu@" + unit + " {\n\t\tcompatible = \"arm,smmu-v3\";\n\t\treg = <" + reg +
         ">;\n\t\t#iommu-cells = <1>;\n" + extra + "\t};\n";
}

// QEMU virt's SMMUv3 (hw/arm/virt.c create_smmu) with `extra` properties, and its PCIe host's iommu-map.
std::string virt_smmu(const std::string& extra) {
  return smmu_v3("9050000", "0x0 0x9050000 0x0 0x20000", "\t\tdma-coherent;\n" + extra) +
         "\tpcie@10000000 {\n\t\tcompatible = \"pci-host-ecam-generic\";\n\t\tiommu-map = <0x0 &smmu 0x0 0x10000>;\n\t};\n";
}

// drivers/of/base.c of_device_is_available: only no status, "okay" or "ok" is there; drivers/iommu/of_iommu.c
// of_iommu_xlate gives a device behind an unavailable IOMMU none (-ENODEV).
TEST(DeviceTree, DisabledSmmuGivesItsDevicesNoIommu) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  for (const std::string status : {"disabled", "fail", "fail-sss"}) {
    const auto r = host_tree(virt_smmu("\t\tstatus = \"" + status + "\";\n"));
    EXPECT_EQ(r.counts(), "1 IOMMU (1 arm,smmu-v3), 1 device (0 needing S2FWB, 1 impossible); 0 errors, 0 warnings");
    EXPECT_EQ(r.status(), HostNesting::impossible);
    ASSERT_EQ(r.iommus.size(), 1u);
    EXPECT_FALSE(r.iommus[0].available);
    ASSERT_EQ(r.devices.size(), 1u);
    EXPECT_EQ(r.devices[0].verdict, HostNesting::impossible);
    EXPECT_EQ(r.devices[0].reason, "/iommu@9050000 is unavailable (status = \"" + status +
                                       "\"): Linux gives the devices behind it no IOMMU (drivers/iommu/of_iommu.c "
                                       "of_iommu_xlate)");
  }
  for (const std::string status : {"okay", "ok"}) {
    const auto r = host_tree(virt_smmu("\t\tstatus = \"" + status + "\";\n"));
    EXPECT_EQ(r.status(), HostNesting::needs_s2fwb) << status;
  }
}

// "reserved": the hardware works but belongs to someone else (the Devicetree Specification, 2.3.4); Linux
// leaves it alone like a disabled one.
TEST(DeviceTree, ReservedSmmuIsNotLinuxs) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const auto r = host_tree(virt_smmu("\t\tstatus = \"reserved\";\n"));
  EXPECT_EQ(r.counts(), "1 IOMMU (1 arm,smmu-v3), 1 device (0 needing S2FWB, 1 impossible); 0 errors, 0 warnings");
  EXPECT_EQ(r.status(), HostNesting::impossible);
  EXPECT_EQ(r.iommus[0].unavailable, "status = \"reserved\"");
  EXPECT_EQ(r.devices[0].iommu_map[0].verdict, HostNesting::impossible);
  EXPECT_EQ(r.devices[0].reason, "/iommu@9050000 is unavailable (status = \"reserved\"): Linux gives the devices "
                                 "behind it no IOMMU (drivers/iommu/of_iommu.c of_iommu_xlate)");
}

// Juno's PCIe SMMU shape (arm/juno-base.dtsi): an MMU-500 with every RID folded onto stream ID 0 by
// iommu-map-mask = <0>. iommufd's vIOMMU exists only on arm-smmu-v3 (arm-smmu-v3-iommufd.c).
TEST(DeviceTree, Mmu500CannotNest) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const auto r = host_tree(R"(	smmu_pcie: iommu@2b500000 {
		compatible = "arm,mmu-500";
		reg = <0x0 0x2b500000 0x0 0x10000>;
		#global-interrupts = <1>;
		#iommu-cells = <1>;
		dma-coherent;
	};
	pcie@40000000 {
		iommu-map-mask = <0x0>;
		iommu-map = <0x0 &smmu_pcie 0x0 0x1>;
	};
)");
  EXPECT_EQ(r.counts(), "1 IOMMU (0 arm,smmu-v3), 1 device (0 needing S2FWB, 1 impossible); 0 errors, 0 warnings");
  EXPECT_EQ(r.status(), HostNesting::impossible);
  ASSERT_EQ(r.iommus.size(), 1u);
  EXPECT_FALSE(r.iommus[0].smmu_v3);
  EXPECT_EQ(r.iommus[0].reg[0].cpu_address, 0x2b500000u);
  EXPECT_EQ(r.devices[0].iommu_map_mask, 0u);
  EXPECT_EQ(r.devices[0].reason, "/iommu@2b500000 is \"arm,mmu-500\", not an arm,smmu-v3: iommufd's vIOMMU "
                                 "(IOMMU_VIOMMU_ALLOC) exists only on arm-smmu-v3");
}

// Qualcomm's shape (qcom/sm8250.dtsi): an SMMU-500 derivative with #iommu-cells = <2> (stream ID, mask), named
// by a device's iommus; the specifier keeps both cells.
TEST(DeviceTree, QcomSmmuCannotNest) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const auto r = host_tree(R"(	soc@0 {
		compatible = "simple-bus";
		#address-cells = <2>;
		#size-cells = <2>;
		ranges = <0 0 0 0 0x10 0>;
		apps_smmu: iommu@15000000 {
			compatible = "qcom,sm8250-smmu-500", "qcom,smmu-500", "arm,mmu-500";
			reg = <0 0x15000000 0 0x100000>;
			#iommu-cells = <2>;
			#global-interrupts = <2>;
		};
		ufshc@1d84000 {
			compatible = "qcom,sm8250-ufshc", "qcom,ufshc", "jedec,ufs-2.0";
			reg = <0 0x01d84000 0 0x3000>;
			iommus = <&apps_smmu 0xe0 0x0>;
		};
	};
)");
  EXPECT_EQ(r.counts(), "1 IOMMU (0 arm,smmu-v3), 1 device (0 needing S2FWB, 1 impossible); 0 errors, 0 warnings");
  EXPECT_EQ(r.status(), HostNesting::impossible);
  EXPECT_EQ(r.iommus[0].compatible, (std::vector<std::string>{"qcom,sm8250-smmu-500", "qcom,smmu-500", "arm,mmu-500"}));
  ASSERT_EQ(r.devices.size(), 1u);
  ASSERT_EQ(r.devices[0].iommus.size(), 1u);
  EXPECT_EQ(r.devices[0].iommus[0].cells, (std::vector<std::uint32_t>{0xe0, 0x0}));
  EXPECT_EQ(r.devices[0].reason, "/soc@0/iommu@15000000 is \"qcom,sm8250-smmu-500\", \"qcom,smmu-500\", "
                                 "\"arm,mmu-500\", not an arm,smmu-v3: iommufd's vIOMMU (IOMMU_VIOMMU_ALLOC) exists "
                                 "only on arm-smmu-v3");
}

// arm-smmu-v3.c takes ARM_SMMU_FEAT_COHERENCY from dma-coherent (arm_smmu_device_dt_probe); without it the
// driver reports no IOMMU_CAP_CACHE_COHERENCY and VFIO refuses the device (drivers/vfio/vfio_main.c
// __vfio_register_dev). A legal tree: a warning, and nothing can nest.
TEST(DeviceTree, SmmuV3WithoutDmaCoherentCannotNest) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const auto r = host_tree(smmu_v3("2b400000", "0x0 0x2b400000 0x0 0x20000", "") +
                           "\tdma@2b600000 {\n\t\tiommus = <&smmu 0x10>;\n\t};\n");
  EXPECT_EQ(r.counts(), "1 IOMMU (1 arm,smmu-v3), 1 device (0 needing S2FWB, 1 impossible); 0 errors, 1 warning");
  EXPECT_EQ(r.status(), HostNesting::impossible);
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].severity, Severity::warning);
  EXPECT_EQ(r.devices[0].reason, "/iommu@2b400000 has no dma-coherent: arm-smmu-v3 then has no "
                                 "ARM_SMMU_FEAT_COHERENCY, reports no IOMMU_CAP_CACHE_COHERENCY, and VFIO refuses "
                                 "its devices (drivers/vfio/vfio_main.c)");
}

// bindings/iommu/iommu.txt: iommus holds one specifier per stream, #iommu-cells (1 for arm,smmu-v3: the stream
// ID) cells after each phandle.
TEST(DeviceTree, DeviceWithTwoStreamIdsNeedsS2fwb) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const auto r = host_tree(smmu_v3("2b400000", "0x0 0x2b400000 0x0 0x20000", "\t\tdma-coherent;\n") +
                           "\tdma@2b600000 {\n\t\tiommus = <&smmu 0x10>, <&smmu 0x11>;\n\t};\n");
  EXPECT_EQ(r.counts(), "1 IOMMU (1 arm,smmu-v3), 1 device (1 needing S2FWB, 0 impossible); 0 errors, 0 warnings");
  EXPECT_EQ(r.status(), HostNesting::needs_s2fwb);
  ASSERT_EQ(r.devices[0].iommus.size(), 2u);
  EXPECT_EQ(r.devices[0].iommus[0].iommu, "/iommu@2b400000");
  EXPECT_EQ(r.devices[0].iommus[0].cells, std::vector<std::uint32_t>{0x10});
  EXPECT_EQ(r.devices[0].iommus[1].cells, std::vector<std::uint32_t>{0x11});
  EXPECT_EQ(r.devices[0].reason, "/iommu@2b400000 is a coherent arm,smmu-v3: nesting if it has S2FWB (IDR3.FWB), "
                                 "which a device tree cannot show (no CANWBS); `vsmmu probe` reads it");
}

// pci-iommu.txt: a RID is looked up as RID & iommu-map-mask; here one stream ID per bus (NXP Layerscape's shape).
TEST(DeviceTree, PcieHostWithIommuMapAndMask) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const auto r = host_tree(smmu_v3("5000000", "0x0 0x5000000 0x0 0x800000", "\t\tdma-coherent;\n") + R"(	pcie@3400000 {
		compatible = "fsl,lx2160a-pcie";
		iommu-map = <0x0 &smmu 0x4000 0x1>, <0x100 &smmu 0x4001 0x1>;
		iommu-map-mask = <0xff00>;
	};
)");
  EXPECT_EQ(r.counts(), "1 IOMMU (1 arm,smmu-v3), 1 device (1 needing S2FWB, 0 impossible); 0 errors, 0 warnings");
  EXPECT_EQ(r.status(), HostNesting::needs_s2fwb);
  const auto& d = r.devices[0];
  EXPECT_EQ(d.iommu_map_mask, 0xff00u);
  ASSERT_EQ(d.iommu_map.size(), 2u);
  EXPECT_EQ(d.iommu_map[1].rid_base, 0x100u);
  EXPECT_EQ(d.iommu_map[1].sid_base, 0x4001u);
  EXPECT_EQ(d.iommu_map[1].target, "/iommu@5000000");
  EXPECT_EQ(d.iommu_map[1].verdict, HostNesting::needs_s2fwb);
}

// drivers/of/address.c of_translate_address: reg is in the parent bus's space; every bus up to the root maps it
// with its ranges (child address, parent address, size, in each level's cells), an empty ranges being 1:1. The
// CPU address is what the IORT's SMMUv3 base names.
TEST(DeviceTree, SmmuUnderBusesHasItsAddressTranslated) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const auto r = host_tree(R"(	soc {
		compatible = "simple-bus";
		#address-cells = <1>;
		#size-cells = <1>;
		ranges = <0x0 0x0 0x40000000 0x10000000>;
		bus@5000000 {
			compatible = "simple-bus";
			#address-cells = <1>;
			#size-cells = <1>;
			ranges;
)" + smmu_v3("5400000", "0x5400000 0x20000", "\t\tdma-coherent;\n") + R"(
		};
	};
	pcie@10000000 {
		iommu-map = <0x0 &smmu 0x0 0x10000>;
	};
)");
  EXPECT_EQ(r.counts(), "1 IOMMU (1 arm,smmu-v3), 1 device (1 needing S2FWB, 0 impossible); 0 errors, 0 warnings");
  EXPECT_EQ(r.status(), HostNesting::needs_s2fwb);
  ASSERT_EQ(r.iommus.size(), 1u);
  EXPECT_EQ(r.iommus[0].path, "/soc/bus@5000000/iommu@5400000");
  EXPECT_EQ(r.iommus[0].reg[0].address, 0x5400000u);
  EXPECT_EQ(r.iommus[0].reg[0].cpu_address, 0x45400000u);
  EXPECT_EQ(r.iommus[0].untranslatable, "");
}

// of_translate_one: a bus without ranges cannot be crossed, so the SMMU's registers are nowhere the CPU sees
// (its platform device gets no MEM resource and arm-smmu-v3 does not probe). The bus address is not a CPU one.
TEST(DeviceTree, SmmuUnderABusWithoutRangesHasNoCpuAddress) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const auto r = host_tree(R"(	soc {
		compatible = "simple-bus";
		#address-cells = <1>;
		#size-cells = <1>;
)" + smmu_v3("5400000", "0x5400000 0x20000", "\t\tdma-coherent;\n") + R"(
	};
	pcie@10000000 {
		iommu-map = <0x0 &smmu 0x0 0x10000>;
	};
)");
  EXPECT_EQ(r.counts(), "1 IOMMU (1 arm,smmu-v3), 1 device (0 needing S2FWB, 1 impossible); 0 errors, 1 warning");
  EXPECT_EQ(r.status(), HostNesting::impossible);
  EXPECT_EQ(r.iommus[0].reg[0].address, 0x5400000u);
  EXPECT_EQ(r.iommus[0].reg[0].cpu_address, std::nullopt);
  EXPECT_EQ(r.iommus[0].untranslatable, "/soc has no ranges, so addresses on it do not reach the CPU "
                                        "(drivers/of/address.c of_translate_one); add ranges (empty for 1:1)");
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].message, "reg 0x5400000 is not translatable to a CPU address: " + r.iommus[0].untranslatable);
  EXPECT_EQ(r.devices[0].reason, "/soc/iommu@5400000's registers cannot be located, so arm-smmu-v3 does not probe it");
}

TEST(DeviceTree, TreeWithoutAnyIommuCannotNest) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const auto r = host_tree(R"(	pcie@10000000 {
		compatible = "pci-host-ecam-generic";
		device_type = "pci";
	};
)");
  EXPECT_EQ(r.counts(), "0 IOMMUs (0 arm,smmu-v3), 0 devices (0 needing S2FWB, 0 impossible); 0 errors, 0 warnings");
  EXPECT_EQ(r.status(), HostNesting::impossible);
}

// drivers/of/platform.c creates no device for an unavailable node nor below an unavailable bus: such a device
// is listed, and does not count.
TEST(DeviceTree, UnavailableDevicesDoNotCount) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const auto r = host_tree(virt_smmu("") + R"(	bus@20000000 {
		compatible = "simple-bus";
		#address-cells = <2>;
		#size-cells = <2>;
		ranges;
		status = "disabled";
		dma@20000000 {
			iommus = <&smmu 0x20>;
		};
	};
)");
  ASSERT_EQ(r.devices.size(), 2u);
  EXPECT_EQ(r.counts(), "1 IOMMU (1 arm,smmu-v3), 2 devices (1 needing S2FWB, 0 impossible, 1 unavailable); "
                         "0 errors, 0 warnings");
  const auto& d = r.devices[1];
  EXPECT_FALSE(d.available);
  EXPECT_EQ(d.unavailable, "under /bus@20000000, whose status = \"disabled\"; Linux creates no device below it "
                           "(drivers/of/platform.c)");
  EXPECT_EQ(d.verdict, HostNesting::impossible);
  // With the host's PCIe host disabled too, nothing available is left behind the SMMU.
  std::string only_disabled = virt_smmu("");
  only_disabled.insert(only_disabled.find("\t\tiommu-map"), "\t\tstatus = \"disabled\";\n");
  const auto none = host_tree(only_disabled);
  EXPECT_EQ(none.counts(), "1 IOMMU (1 arm,smmu-v3), 1 device (0 needing S2FWB, 0 impossible, 1 unavailable); "
                            "0 errors, 0 warnings");
  EXPECT_EQ(none.status(), HostNesting::impossible);
}

// A device naming a phandle no node has: Linux cannot read its reference; the tree is malformed.
TEST(DeviceTree, DanglingIommuPhandleIsMalformed) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const auto r = host_tree(R"(	dma@2b600000 {
		iommus = <0x77 0x10>;
	};
)");
  EXPECT_EQ(r.counts(), "0 IOMMUs (0 arm,smmu-v3), 1 device (0 needing S2FWB, 0 impossible, 1 with a broken "
                         "reference); 1 error, 0 warnings");
  EXPECT_EQ(r.status(), HostNesting::malformed);
  EXPECT_EQ(r.devices[0].verdict, HostNesting::malformed);
  EXPECT_EQ(r.problems[0].message, "iommus names phandle 0x77, which no node has");
}

// What inspect() refuses is a malformed tree for the check, not a failure to run.
TEST(DeviceTree, RefusedBlobIsMalformed) {
  auto r = inspect(test::qemu_virt_iort());
  ASSERT_FALSE(r);
  const Report refused_report = refused(r.error());
  EXPECT_EQ(refused_report.status(), HostNesting::malformed);
  EXPECT_EQ(exit_code(refused_report.status()), 4);
  EXPECT_EQ(refused_report.problems[0].path, "/");
  EXPECT_EQ(refused_report.problems[0].message, r.error().message);
}

}  // namespace
}  // namespace vsmmu::acpi::dt
