// `vsmmu dt` as an operator runs it: `dt check`'s status and exit code (acpi/nesting_status.hpp: 1 needs S2FWB,
// 3 impossible, 4 malformed, 2 could not run), its text and JSON on host trees shaped like Linux's
// arch/arm64/boot/dts, and `dt gen`'s golden tree read back.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "acpi/files.hpp"
#include "acpi/nesting_status.hpp"
#include "cli_run.hpp"
#include "fixtures.hpp"

namespace vsmmu::acpi {
namespace {

using test::data;
using test::expect_in;
using test::vsmmu;

using nlohmann::json;

// `body` under a root with two address and two size cells, compiled by dtc into DIR/NAME.dtb; its path.
std::string host_dtb(const std::string& dir, const std::string& name, const std::string& body) {
  const std::string dts = "/dts-v1/;\n/ {\n\t#address-cells = <2>;\n\t#size-cells = <2>;\n" + body + "};\n";
  EXPECT_TRUE(write_file(dir + "/" + name + ".dts", std::vector<std::uint8_t>(dts.begin(), dts.end())));
  const auto r = test::run(std::string("'") + VSMMU_DTC + "' -I dts -O dtb -o '" + dir + "/" + name + ".dtb' '" + dir +
                           "/" + name + ".dts'");
  EXPECT_EQ(r.status, 0) << r.out;
  return dir + "/" + name + ".dtb";
}

// A host with the three kinds a real board mixes: a coherent SMMUv3 under a soc bus whose ranges move it, a
// disabled one, and an MMU-500 with a device behind each.
constexpr const char* kMixedHost = R"(	soc {
		compatible = "simple-bus";
		#address-cells = <1>;
		#size-cells = <1>;
		ranges = <0x0 0x0 0x40000000 0x10000000>;
		smmu: iommu@5400000 {
			compatible = "arm,smmu-v3";
			reg = <0x5400000 0x20000>;
			#iommu-cells = <1>;
			dma-coherent;
			interrupt-names = "eventq", "gerror";
		};
		off: iommu@5600000 {
			compatible = "arm,smmu-v3";
			reg = <0x5600000 0x20000>;
			#iommu-cells = <1>;
			dma-coherent;
			status = "disabled";
		};
		mmu500: iommu@5800000 {
			compatible = "arm,mmu-500";
			reg = <0x5800000 0x10000>;
			#iommu-cells = <1>;
		};
		dma@1000 {
			reg = <0x1000 0x100>;
			iommus = <&smmu 0x10>, <&smmu 0x11>;
		};
		gpu@2000 {
			reg = <0x2000 0x100>;
			iommus = <&mmu500 0x400>;
		};
	};
	pcie@10000000 {
		iommu-map = <0x0 &off 0x0 0x10000>;
		iommu-map-mask = <0xff00>;
	};
)";

TEST(CliDt, CheckListsEveryIommuAndDeviceWithItsVerdict) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const std::string path = host_dtb(test::temp_dir(), "mixed", kMixedHost);
  const auto r = vsmmu("dt check '" + path + "'");
  EXPECT_EQ(r.status, 1) << r.out;  // needs_s2fwb
  expect_in(r.out, "device tree " + path + ": 3 IOMMUs (2 arm,smmu-v3), 3 devices (1 needing S2FWB, 2 impossible); "
                   "0 errors, 0 warnings\n");
  expect_in(r.out, "  /soc/iommu@5400000: \"arm,smmu-v3\" at 0x45400000 (size 0x20000; 0x5400000 on its bus), "
                   "available, dma-coherent, phandle 0x1, #iommu-cells 1, interrupts [eventq, gerror]\n");
  expect_in(r.out, "  /soc/iommu@5600000: \"arm,smmu-v3\" at 0x45600000 (size 0x20000; 0x5600000 on its bus), "
                   "unavailable (status = \"disabled\"), dma-coherent, phandle 0x3, #iommu-cells 1\n");
  expect_in(r.out, "  /soc/iommu@5800000: \"arm,mmu-500\" at 0x45800000 (size 0x10000; 0x5800000 on its bus), "
                   "available, not dma-coherent, phandle 0x2, #iommu-cells 1\n");  // dtc numbers phandles as referenced
  expect_in(r.out, "  /soc/dma@1000\n    iommus -> /soc/iommu@5400000 stream IDs 0x10, 0x11\n    -> needs_s2fwb: ");
  expect_in(r.out, "  /soc/gpu@2000\n    iommus -> /soc/iommu@5800000 stream ID 0x400\n    -> impossible: "
                   "/soc/iommu@5800000 is \"arm,mmu-500\", not an arm,smmu-v3");
  expect_in(r.out, "    iommu-map (iommu-map-mask 0xff00: RID & 0xff00 is looked up):\n"
                   "      RIDs 0x0-0xffff -> /soc/iommu@5600000 stream IDs 0x0-0xffff: impossible\n");
  expect_in(r.out, "result: needs S2FWB: devices sit behind an available, coherent arm,smmu-v3; a device "
                   "tree cannot carry CANWBS, so nesting needs the SMMU's S2FWB (IDR3.FWB): `vsmmu probe` reads it\n");
}

TEST(CliDt, CheckJsonCarriesTheStatusTheIommusAndTheDevices) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const std::string path = host_dtb(test::temp_dir(), "mixed", kMixedHost);
  const auto r = vsmmu("dt check --json '" + path + "'");
  EXPECT_EQ(r.status, 1) << r.out;
  const json j = json::parse(r.out);
  EXPECT_EQ(j["status"], json({{"name", "needs_s2fwb"}, {"exit_code", 1}}));
  EXPECT_EQ(j["counts"], "3 IOMMUs (2 arm,smmu-v3), 3 devices (1 needing S2FWB, 2 impossible); 0 errors, 0 warnings");
  ASSERT_EQ(j["iommus"].size(), 3u);
  EXPECT_EQ(j["iommus"][0]["base"], 0x45400000);
  EXPECT_EQ(j["iommus"][0]["reg"][0]["address"], 0x5400000);
  EXPECT_EQ(j["iommus"][0]["verdict"], "needs_s2fwb");
  EXPECT_EQ(j["iommus"][1]["available"], false);
  EXPECT_EQ(j["iommus"][1]["unavailable"], "status = \"disabled\"");
  EXPECT_EQ(j["iommus"][2]["smmu_v3"], false);
  EXPECT_EQ(j["iommus"][2]["compatible"], json({"arm,mmu-500"}));
  ASSERT_EQ(j["devices"].size(), 3u);
  EXPECT_EQ(j["devices"][0]["iommus"][1]["cells"], json({0x11}));
  EXPECT_EQ(j["devices"][0]["verdict"], "needs_s2fwb");
  EXPECT_EQ(j["devices"][1]["verdict"], "impossible");
  EXPECT_EQ(j["devices"][2]["iommu_map_mask"], 0xff00);
  EXPECT_EQ(j["devices"][2]["iommu_map"][0]["verdict"], "impossible");
  EXPECT_EQ(j["problems"], json::array());
  EXPECT_EQ(j["canwbs_expressible"], false);
}

TEST(CliDt, GenWritesTheGoldenTreeAndCheckReadsIt) {
  const std::string dir = test::temp_dir();
  const auto g = vsmmu("dt gen --smmu base=0x9050000,eventq=106,priq=107,cmdq-sync=109,gerror=108 "
                       "--map rid=0,count=0x100 --map rid=0x200,count=0x80,vsid=0x1000 -o '" + dir + "/t.dtb'");
  ASSERT_EQ(g.status, 0) << g.out;
  EXPECT_EQ(read_file(dir + "/t.dtb").value(), test::read_golden("dt/vsmmu-new-tree.dtb"));
  const auto c = vsmmu("dt check '" + dir + "/t.dtb'");
  EXPECT_EQ(c.status, exit_code(HostNesting::needs_s2fwb)) << c.out;
  expect_in(c.out, "  /smmuv3@9050000: \"arm,smmu-v3\" at 0x9050000 (size 0x20000), available, dma-coherent, "
                   "phandle 0x1, #iommu-cells 1, interrupts [eventq, priq, cmdq-sync, gerror]\n");
  expect_in(c.out, "      RIDs 0x200-0x27f -> /smmuv3@9050000 stream IDs 0x1000-0x107f: needs_s2fwb\n");
  expect_in(c.out, "cannot carry CANWBS");
  const auto j = vsmmu("dt check --json '" + dir + "/t.dtb'");
  EXPECT_EQ(j.status, 1);
  EXPECT_EQ(json::parse(j.out)["devices"][0]["iommu_map"][1]["sid_base"], 0x1000);
}

TEST(CliDt, CheckExitCodes) {
  const std::string dir = test::temp_dir();
  // A non-coherent SMMUv3: a legal tree (a warning) where nothing can nest: 3.
  ASSERT_EQ(vsmmu("dt gen --smmu base=0x9050000,eventq=106,gerror=108,noncoherent --msi-window 0x8000000,0x100000 "
                  "-o '" + dir + "/n.dtb'").status, 0);
  const auto impossible = vsmmu("dt check '" + dir + "/n.dtb'");
  EXPECT_EQ(impossible.status, 3) << impossible.out;
  expect_in(impossible.out, "  warning /smmuv3@9050000: no dma-coherent");
  expect_in(impossible.out, "result: impossible: no available device sits behind an available, coherent "
                            "arm,smmu-v3\n");
  // Not a device tree (an IORT): malformed, 4, in text and JSON.
  const auto iort = vsmmu("dt check '" + data("iort/qemu-virt.dat") + "'");
  EXPECT_EQ(iort.status, 4) << iort.out;
  expect_in(iort.out, "  error   /: not a sound flattened device tree: FDT_ERR_BADMAGIC");
  expect_in(iort.out, "result: malformed: 1 error: Linux would misread this tree; fix it first\n");
  const auto iort_json = vsmmu("dt check --json '" + data("iort/qemu-virt.dat") + "'");
  EXPECT_EQ(iort_json.status, 4);
  EXPECT_EQ(json::parse(iort_json.out)["status"]["name"], "malformed");
  // Could not run: 2.
  EXPECT_EQ(vsmmu("dt check /nonexistent.dtb").status, 2);
  EXPECT_EQ(vsmmu("dt check").status, 2);
  EXPECT_EQ(vsmmu("dt check --bogus").status, 2);
  EXPECT_EQ(vsmmu("dt gen -o '" + dir + "/x.dtb'").status, 2);  // no --smmu
}

// QEMU 11.1's own tree (`qemu-system-aarch64 -machine virt,iommu=smmuv3,dumpdtb=...`, compacted by dtc): the
// SMMUv3 QEMU describes and its PCIe host's iommu-map, which is what a guest of the e2e tier boots with.
TEST(CliDt, QemuVirtTreeNeedsS2fwbForItsPcieHost) {
  const auto r = vsmmu("dt check '" + data("dt/qemu-virt-smmuv3.dtb") + "'");
  EXPECT_EQ(r.status, 1) << r.out;
  expect_in(r.out, ": 1 IOMMU (1 arm,smmu-v3), 1 device (1 needing S2FWB, 0 impossible); 0 errors, 0 warnings\n");
  expect_in(r.out, "  /smmuv3@9050000: \"arm,smmu-v3\" at 0x9050000 (size 0x20000), available, dma-coherent, "
                   "phandle 0x8004, #iommu-cells 1, interrupts [eventq, priq, cmdq-sync, gerror]\n");
  expect_in(r.out, "  /pcie@10000000\n    iommu-map:\n      RIDs 0x0-0xffff -> /smmuv3@9050000 stream IDs 0x0-0xffff: "
                   "needs_s2fwb\n");
  expect_in(r.out, "result: needs S2FWB: ");
}

TEST(CliDt, CheckOfATreeWithoutIommusExitsThree) {
  if (!test::tool_present(VSMMU_DTC, "dtc", "device-tree-compiler")) return;
  const std::string path = host_dtb(test::temp_dir(), "none", "\tmemory@40000000 {\n\t\tdevice_type = \"memory\";\n"
                                                              "\t\treg = <0x0 0x40000000 0x0 0x40000000>;\n\t};\n");
  const auto r = vsmmu("dt check '" + path + "'");
  EXPECT_EQ(r.status, 3) << r.out;
  expect_in(r.out, "0 IOMMUs (0 arm,smmu-v3), 0 devices (0 needing S2FWB, 0 impossible); 0 errors, 0 warnings\n");
  expect_in(r.out, "result: impossible: the tree describes no IOMMU\n");
}

TEST(CliDt, CheckHelpCarriesTheSharedExitStatuses) {
  const auto r = vsmmu("dt check --help");
  EXPECT_EQ(r.status, 0);
  expect_in(r.out, exit_status_help());
}

}  // namespace
}  // namespace vsmmu::acpi
