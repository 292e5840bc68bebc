// The --json reports: the same facts as the model, under stable names, whatever bytes the firmware's
// strings hold.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "acpi/json.hpp"
#include "acpi/iort_patch.hpp"
#include "fixtures.hpp"

namespace vsmmu::acpi {
namespace {

using nlohmann::json;

json iort_report(const test::Bytes& t) {
  auto r = iort::parse(t);
  EXPECT_TRUE(r);
  return json::parse(iort_json("t.dat", *r, iort::nesting_report(r->table)));
}

TEST(Json, IortReportCarriesTheVerdictAndTheFlags) {
  const json j = iort_report(test::qemu_virt_iort());
  EXPECT_EQ(j["source"], "t.dat");
  EXPECT_EQ(j["valid"], true);
  EXPECT_EQ(j["errors"], 0);
  EXPECT_EQ(j["header"]["revision"], 5);
  EXPECT_EQ(j["header"]["oem_id"], "BOCHS ");
  ASSERT_EQ(j["nodes"].size(), 3u);
  EXPECT_EQ(j["nodes"][1]["type_name"], "SMMUv3");
  EXPECT_EQ(j["nodes"][1]["fields"]["base"], 0x9050000);
  EXPECT_EQ(j["nodes"][1]["fields"]["cohacc"], true);
  EXPECT_EQ(j["nodes"][2]["fields"]["memory"]["flags"], 3);
  EXPECT_EQ(j["nodes"][2]["fields"]["pasid_capabilities"], nullptr);  // revision 3
  EXPECT_EQ(j["nodes"][2]["mappings"][0]["output_reference"], test::kQemuSmmu);
  ASSERT_EQ(j["root_complexes"].size(), 1u);
  const auto& rc = j["root_complexes"][0];
  EXPECT_EQ(rc["verdict"], "needs_s2fwb");
  EXPECT_EQ(rc["memory"]["cpm"], true);
  EXPECT_EQ(rc["memory"]["dacs"], true);
  EXPECT_EQ(rc["memory"]["flag_names"], "CPM|DACS");
  EXPECT_EQ(rc["memory"]["canwbs"], false);
  EXPECT_EQ(rc["routes"][0]["target"], "SMMUv3");
  EXPECT_EQ(rc["routes"][0]["target_base"], 0x9050000);
  EXPECT_EQ(rc["routes"][0]["target_name"], "SMMUv3 at 0x9050000 (node 0x048)");
  EXPECT_EQ(rc["routes"][0]["applies"], true);
  EXPECT_EQ(rc["routes"][0]["out_last"], 0xffff);
  EXPECT_EQ(j["any_canwbs"], false);
  // The host's status and summary, the same as the text report's exit status and "result:" line.
  EXPECT_EQ(j["status"]["name"], "needs_s2fwb");
  EXPECT_EQ(j["status"]["exit_code"], 1);
  auto r = iort::parse(test::qemu_virt_iort());
  EXPECT_EQ(j["summary"], iort::nesting_summary(*r, iort::nesting_report(r->table), "t.dat"));
  // The nesting warnings follow the parser's problems.
  EXPECT_EQ(j["warnings"], 1);
  ASSERT_EQ(j["problems"].size(), 1u);
  EXPECT_EQ(j["problems"][0]["check"], "canwbs_revision");
  EXPECT_EQ(j["named_components"].size(), 0u);

  const json patched = iort_report(iort::set_canwbs(test::qemu_virt_iort(), std::nullopt)->table);
  EXPECT_EQ(patched["root_complexes"][0]["verdict"], "allowed_canwbs");
  EXPECT_EQ(patched["any_canwbs"], true);
  EXPECT_EQ(patched["status"]["name"], "possible");
  EXPECT_EQ(patched["status"]["exit_code"], 0);
}

TEST(Json, NamedComponentsAndShadowedRootComplexes) {
  const json j = iort_report(test::all_node_types());
  ASSERT_EQ(j["named_components"].size(), 1u);
  const auto& nc = j["named_components"][0];
  EXPECT_EQ(nc["device_name"], "\\_SB_.PCI0.DMA0");
  EXPECT_EQ(nc["verdict"], "needs_s2fwb");
  EXPECT_EQ(nc["memory"]["cache_coherency"], 1);
  EXPECT_EQ(nc["routes"][0]["target_name"], "SMMUv3 at 0x9050000 (node 0x0c4)");
  EXPECT_EQ(j["root_complexes"][0]["shadowed_by"], nullptr);
}

TEST(Json, ProblemsAreListedWithOffsetAndCheck) {
  test::Bytes t = test::qemu_virt_iort();
  t[iort::layout::kChecksum] ^= 1;
  const json j = iort_report(t);
  EXPECT_EQ(j["valid"], false);
  EXPECT_EQ(j["status"]["name"], "malformed");
  EXPECT_EQ(j["status"]["exit_code"], 4);
  ASSERT_EQ(j["problems"].size(), 2u);  // the checksum error, then the CANWBS revision warning
  EXPECT_EQ(j["problems"][0]["offset"], 9);
  EXPECT_EQ(j["problems"][0]["check"], "checksum");
  EXPECT_EQ(j["problems"][0]["severity"], "error");
}

TEST(Json, FirmwareBytesThatAreNotUtf8DoNotBreakTheReport) {
  test::Bytes t = test::qemu_virt_iort();
  t[iort::layout::kOemId] = 0xff;  // not UTF-8
  test::fix_checksum(t);
  const json j = iort_report(t);
  EXPECT_EQ(j["header"]["oem_id"], "\xEF\xBF\xBD" "OCHS ");  // U+FFFD
}

TEST(Json, DeviceTreeReport) {
  dt::VsmmuSpec s;
  s.base = 0x9050000;
  s.irqs = {{"eventq", 106}, {"gerror", 108}};
  s.iommu_map = {{0, 0, 0x10000}};
  s.msi_windows = {{0x8000000, 0x100000}};
  auto blob = dt::add_vsmmu({}, s);
  ASSERT_TRUE(blob);
  auto r = dt::inspect(*blob);
  ASSERT_TRUE(r);
  const json j = json::parse(dt_json("t.dtb", *r));
  EXPECT_EQ(j["status"], json({{"name", "needs_s2fwb"}, {"exit_code", 1}}));
  EXPECT_EQ(j["canwbs_expressible"], false);
  EXPECT_EQ(j["iommus"][0]["path"], "/smmuv3@9050000");
  EXPECT_EQ(j["iommus"][0]["dma_coherent"], true);
  EXPECT_EQ(j["iommus"][0]["interrupt_names"], json({"eventq", "gerror"}));
  EXPECT_EQ(j["iommus"][0]["reg"][0]["size"], 0x20000);
  EXPECT_EQ(j["devices"][0]["iommu_map"][0]["target"], "/smmuv3@9050000");
  EXPECT_EQ(j["devices"][0]["iommu_map"][0]["length"], 0x10000);
}

}  // namespace
}  // namespace vsmmu::acpi
