// The CLI's textual specs: numbers in decimal or hex, every key named, typos refused by name.
#include <gtest/gtest.h>

#include "acpi/spec_text.hpp"

namespace vsmmu::acpi::text {
namespace {

TEST(SpecText, Numbers) {
  EXPECT_EQ(number("0x9050000", "base").value(), 0x9050000u);
  EXPECT_EQ(number("106", "event").value(), 106u);
  EXPECT_FALSE(number("0x", "base"));
  EXPECT_FALSE(number("12k", "base"));
  EXPECT_FALSE(number("", "base"));
  EXPECT_EQ(number("0x1ffffffffffffffff", "base").error().err, ERANGE);
}

TEST(SpecText, GuestSmmu) {
  auto s = guest_smmu("base=0x9050000,event=106,pri=107,gerr=108,sync=109");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->base, 0x9050000u);
  EXPECT_EQ(s->event_gsiv, 106u);
  EXPECT_EQ(s->pri_gsiv, 107u);
  EXPECT_EQ(s->gerr_gsiv, 108u);
  EXPECT_EQ(s->sync_gsiv, 109u);
  EXPECT_TRUE(s->coherent);
  auto n = guest_smmu("base=0x1000000,event=40,noncoherent,msi-devid=0x20000");
  ASSERT_TRUE(n);
  EXPECT_FALSE(n->coherent);
  EXPECT_EQ(n->msi_device_id, 0x20000u);
  EXPECT_EQ(n->pri_gsiv, 0u);
  auto typo = guest_smmu("base=0x1000000,evnt=40");
  ASSERT_FALSE(typo);
  EXPECT_NE(typo.error().message.find("unknown key 'evnt'"), std::string::npos);
  EXPECT_FALSE(guest_smmu("event=40"));            // no base
  EXPECT_FALSE(guest_smmu("base=1,event=1,event=2"));  // twice
  EXPECT_FALSE(guest_smmu("base=1,noncoherent=1"));
  EXPECT_FALSE(guest_smmu("base=1,event=0x100000000"));
}

TEST(SpecText, GuestMapDefaultsToIdentityOnSmmuZero) {
  auto m = guest_map("rid=0x100,count=0x80");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->map.rid_base, 0x100u);
  EXPECT_EQ(m->map.count, 0x80u);
  EXPECT_EQ(m->map.vsid_base, 0x100u);
  EXPECT_EQ(m->map.smmu, 0u);
  EXPECT_EQ(m->segment, 0u);
  auto full = guest_map("segment=1,rid=0,count=16,vsid=0x1000,smmu=2");
  ASSERT_TRUE(full);
  EXPECT_EQ(full->segment, 1u);
  EXPECT_EQ(full->map.vsid_base, 0x1000u);
  EXPECT_EQ(full->map.smmu, 2u);
  EXPECT_FALSE(guest_map("rid=0"));
}

TEST(SpecText, DeviceTreeSmmuOrdersLinesAsTheBindingDoes) {
  auto s = dt_smmu("gerror=108,base=0x9050000,eventq=106,cmdq-sync=109");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->base, 0x9050000u);
  EXPECT_EQ(s->size, 0x20000u);
  ASSERT_EQ(s->irqs.size(), 3u);
  EXPECT_EQ(s->irqs[0].name, "eventq");
  EXPECT_EQ(s->irqs[1].name, "cmdq-sync");
  EXPECT_EQ(s->irqs[2].name, "gerror");
  EXPECT_TRUE(s->dma_coherent);
  EXPECT_FALSE(dt_smmu("base=1,event=106").has_value());  // the IORT's key, not the binding's name
  auto m = dt_map("rid=0,count=0x10000");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->length, 0x10000u);
  EXPECT_EQ(m->vsid_base, 0u);
  EXPECT_FALSE(dt_map("rid=0,count=1,smmu=0"));
}

}  // namespace
}  // namespace vsmmu::acpi::text
