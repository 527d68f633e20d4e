#include "driver/libvirt/volume_xml.h"

#include <gtest/gtest.h>

#include <string>

#include "cloudmgr/units.h"

namespace cloudmgr::libvirt {
namespace {

TEST(CanonicalDir, CollapsesSlashesAndDropsTheTrailingOne) {
  EXPECT_EQ(canonical_dir("/var/lib/x"), "/var/lib/x");
  EXPECT_EQ(canonical_dir("/var//lib///x/"), "/var/lib/x");
  EXPECT_EQ(canonical_dir("/var/lib/x//"), "/var/lib/x");
  EXPECT_EQ(canonical_dir("/"), "/");
  EXPECT_EQ(canonical_dir("///"), "/");
}

TEST(PoolXml, WrittenXmlParsesBack) {
  const std::string xml = pool_xml("agent-images", "/srv/a&b <c>");
  PoolDescription pool;
  ASSERT_TRUE(parse_pool_xml(xml, pool).ok()) << xml;
  EXPECT_EQ(pool.name, "agent-images");
  EXPECT_EQ(pool.type, "dir");
  EXPECT_EQ(pool.path, "/srv/a&b <c>");
  EXPECT_EQ(xml.find("permissions"), std::string::npos) << "an existing directory keeps its mode";
}

// As libvirtd 9.0 wrote it here for a started directory pool.
TEST(PoolXml, ReadsLibvirtsOwnXml) {
  const char* xml = R"(<pool type='dir'>
  <name>hB-exp</name>
  <uuid>89a9e6a0-db7b-454a-963d-656303fbba0b</uuid>
  <capacity unit='bytes'>270553174016</capacity>
  <allocation unit='bytes'>17885245440</allocation>
  <available unit='bytes'>252667928576</available>
  <source>
  </source>
  <target>
    <path>/var/lib/libvirt/images/hB-exp</path>
    <permissions>
      <mode>0711</mode>
      <owner>0</owner>
      <group>0</group>
    </permissions>
  </target>
</pool>)";
  PoolDescription pool;
  ASSERT_TRUE(parse_pool_xml(xml, pool).ok());
  EXPECT_EQ(pool.name, "hB-exp");
  EXPECT_EQ(pool.type, "dir");
  EXPECT_EQ(pool.path, "/var/lib/libvirt/images/hB-exp");
}

TEST(PoolXml, MalformedXmlIsInternal) {
  PoolDescription pool;
  EXPECT_EQ(parse_pool_xml("<pool", pool).code(), StatusCode::kInternal);
  EXPECT_EQ(parse_pool_xml("<volume/>", pool).code(), StatusCode::kInternal);
}

TEST(VolumeXml, AnOverlayNamesItsBackingFileAndFormat) {
  const VolumeSpec spec{
      .name = "web1&co.qcow2", .format = "qcow2", .backing_path = "/srv/images/base <1>.raw", .backing_format = "raw"};
  const std::string xml = volume_xml(spec, kGiB);
  EXPECT_NE(xml.find("<capacity unit='bytes'>1073741824</capacity>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<allocation unit='bytes'>0</allocation>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<compat>1.1</compat>"), std::string::npos) << xml;
  VolumeInfo v;
  ASSERT_TRUE(parse_volume_xml(xml, v).ok()) << xml;
  EXPECT_EQ(v.name, "web1&co.qcow2");
  EXPECT_EQ(v.capacity_bytes, kGiB);
  EXPECT_EQ(v.allocation_bytes, 0U);
  EXPECT_EQ(v.format, "qcow2");
  EXPECT_EQ(v.backing_path, "/srv/images/base <1>.raw");
  EXPECT_EQ(v.backing_format, "raw");
  EXPECT_EQ(v.path, "");  // libvirt picks it: the pool's directory and the name
}

TEST(VolumeXml, ABlankRawVolumeIsSparseAndStandsAlone) {
  const std::string xml = volume_xml({.name = "data.raw", .capacity_bytes = 10 * kGiB, .format = "raw"}, 10 * kGiB);
  EXPECT_EQ(xml.find("backingStore"), std::string::npos) << xml;
  EXPECT_EQ(xml.find("compat"), std::string::npos) << xml;
  VolumeInfo v;
  ASSERT_TRUE(parse_volume_xml(xml, v).ok()) << xml;
  EXPECT_EQ(v.format, "raw");
  EXPECT_EQ(v.capacity_bytes, 10 * kGiB);
  EXPECT_EQ(v.allocation_bytes, 0U);
  EXPECT_EQ(v.backing_path, "");
  EXPECT_EQ(v.backing_format, "");
}

// As libvirtd 9.0 wrote it here for an overlay over a 1 GiB raw base.
TEST(VolumeXml, ReadsLibvirtsOwnXml) {
  const char* xml = R"(<volume type='file'>
  <name>ov.qcow2</name>
  <key>/var/lib/libvirt/images/hB-exp/ov.qcow2</key>
  <capacity unit='bytes'>1073741824</capacity>
  <allocation unit='bytes'>200704</allocation>
  <physical unit='bytes'>196624</physical>
  <target>
    <path>/var/lib/libvirt/images/hB-exp/ov.qcow2</path>
    <format type='qcow2'/>
    <permissions>
      <mode>0600</mode>
      <owner>0</owner>
      <group>0</group>
    </permissions>
  </target>
  <backingStore>
    <path>/var/lib/libvirt/images/hB-exp/base.raw</path>
    <format type='raw'/>
    <permissions>
      <mode>0644</mode>
    </permissions>
  </backingStore>
</volume>)";
  VolumeInfo v;
  ASSERT_TRUE(parse_volume_xml(xml, v).ok());
  EXPECT_EQ(v.name, "ov.qcow2");
  EXPECT_EQ(v.path, "/var/lib/libvirt/images/hB-exp/ov.qcow2");
  EXPECT_EQ(v.capacity_bytes, kGiB);
  EXPECT_EQ(v.allocation_bytes, 200704U);
  EXPECT_EQ(v.format, "qcow2");
  EXPECT_EQ(v.backing_path, "/var/lib/libvirt/images/hB-exp/base.raw");
  EXPECT_EQ(v.backing_format, "raw");
}

TEST(VolumeXml, ReadsEveryUnitLibvirtTakes) {
  const auto capacity = [](const std::string& unit, const std::string& value) -> Result<std::uint64_t> {
    VolumeInfo v;
    const std::string xml = "<volume><name>v</name><capacity unit='" + unit + "'>" + value + "</capacity></volume>";
    if (Status s = parse_volume_xml(xml, v); !s.ok()) {
      return s;
    }
    return v.capacity_bytes;
  };
  EXPECT_EQ(capacity("bytes", "512").value_or(0), 512U);
  EXPECT_EQ(capacity("b", "512").value_or(0), 512U);
  EXPECT_EQ(capacity("", "512").value_or(0), 512U);
  EXPECT_EQ(capacity("KiB", "2").value_or(0), 2048U);
  EXPECT_EQ(capacity("k", "2").value_or(0), 2048U);
  EXPECT_EQ(capacity("KB", "2").value_or(0), 2000U);
  EXPECT_EQ(capacity("M", "3").value_or(0), 3 * kMiB);
  EXPECT_EQ(capacity("GiB", "1").value_or(0), kGiB);
  EXPECT_EQ(capacity("GB", "1").value_or(0), 1'000'000'000U);
  EXPECT_EQ(capacity("T", "1").value_or(0), 1024 * kGiB);
  EXPECT_EQ(capacity("EiB", "15").value_or(0), 15ULL << 60);
  EXPECT_EQ(capacity("EiB", "16").status().code(), StatusCode::kInternal);  // 2^64: too large
  EXPECT_EQ(capacity("furlong", "1").status().code(), StatusCode::kInternal);
  EXPECT_EQ(capacity("bytes", "-1").status().code(), StatusCode::kInternal);
  EXPECT_EQ(capacity("bytes", "12x").status().code(), StatusCode::kInternal);
}

TEST(VolumeXml, AMissingSizeIsZeroAndABadDocumentIsInternal) {
  VolumeInfo v;
  ASSERT_TRUE(parse_volume_xml("<volume><name>x</name></volume>", v).ok());
  EXPECT_EQ(v.capacity_bytes, 0U);
  EXPECT_EQ(parse_volume_xml("<pool/>", v).code(), StatusCode::kInternal);
  EXPECT_EQ(parse_volume_xml("not xml", v).code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace cloudmgr::libvirt
