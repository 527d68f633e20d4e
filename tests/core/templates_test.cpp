// Template model (templates.h) and its JSON codec (also in templates.h).
#include "cloudmgr/templates.h"

#include <gtest/gtest.h>

#include <string>

#include "cloudmgr/templates.h"

namespace cloudmgr {
namespace {

TemplateSpec good_spec() {
  TemplateSpec spec;
  spec.vcpus = 2;
  spec.memory_bytes = 2 * kGiB;
  return spec;
}

// Every field away from its default, with text that needs escaping in JSON.
TemplateSpec full_spec() {
  TemplateSpec spec;
  spec.vcpus = 4;
  spec.memory_bytes = 16ULL * 1024 * kGiB;  // the largest allowed: exact through JSON
  spec.arch = "aarch64";
  spec.machine = "virt-7.2";
  spec.boot_devices = {"network", "hd"};
  spec.base_disk_bus = DiskBus::kScsi;
  spec.data_disks = {{.size_bytes = 10 * kGiB, .bus = DiskBus::kVirtio}, {.size_bytes = kMiB, .bus = DiskBus::kIde}};
  spec.nics = {{.type = NicType::kBridge, .source = "br0", .mac = "", .model = "e1000"},
               {.type = NicType::kEthernet, .source = "", .mac = "", .model = "virtio"},
               {.type = NicType::kNetwork, .source = "default", .mac = "", .model = "rtl8139"}};
  spec.description = "Web tier \"blue\"\n\tcaf\xc3\xa9 \\ done";
  // Not in key order: the order must survive.
  spec.metadata = {{"zeta", "last"}, {"os", "debian-12"}, {"a.b_c-d", "caf\xc3\xa9 \"q\""}, {"empty", ""}};
  return spec;
}

TemplateInfo full_info() {
  TemplateInfo info;
  info.name = "web";
  info.version = 42;
  info.spec = full_spec();
  info.image = {.sha256 = std::string(64, 'a'),
                .format = ImageFormat::kRaw,
                .size_bytes = 18446744073709551615ULL,
                .virtual_size_bytes = 4 * kGiB};
  info.created_ns = -5;  // before the epoch: signed through JSON
  info.origin = "import /srv/images/web base.qcow2";
  return info;
}

void expect_invalid(const Status& s, const std::string& must_mention) {
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find(must_mention), std::string::npos) << "message: " << s.message();
}

TEST(TemplateName, FollowsTheVmNameRules) {
  EXPECT_TRUE(validate_template_name("web").ok());
  EXPECT_TRUE(validate_template_name("Web-1.prod_2").ok());
  EXPECT_TRUE(validate_template_name(std::string(64, 'x')).ok());
  expect_invalid(validate_template_name(""), "template name is empty");
  expect_invalid(validate_template_name(std::string(65, 'x')), "65 characters");
  expect_invalid(validate_template_name("-web"), "must start");
  expect_invalid(validate_template_name("web:1"), "':'");
  expect_invalid(validate_template_name("tab\there"), "\\x09");
}

TEST(TemplateSha256, WantsSixtyFourLowerCaseHexDigits) {
  EXPECT_TRUE(validate_sha256(std::string(64, '0')).ok());
  EXPECT_TRUE(validate_sha256("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").ok());
  expect_invalid(validate_sha256(std::string(63, 'a')), "64 lower-case hex");
  expect_invalid(validate_sha256(std::string(65, 'a')), "64 lower-case hex");
  expect_invalid(validate_sha256(std::string(64, 'A')), "AAAA");
  expect_invalid(validate_sha256(std::string(64, 'g')), "gggg");
}

TEST(TemplateImageFormat, PrintsAndParses) {
  EXPECT_EQ(to_string(ImageFormat::kQcow2), "qcow2");
  EXPECT_EQ(to_string(ImageFormat::kRaw), "raw");
  EXPECT_EQ(*parse_image_format("qcow2"), ImageFormat::kQcow2);
  EXPECT_EQ(*parse_image_format("raw"), ImageFormat::kRaw);
  expect_invalid(parse_image_format("vmdk").status(), "'vmdk'");
  expect_invalid(parse_image_format("QCOW2").status(), "'QCOW2'");
}

TEST(TemplateSpecValidation, AcceptsGoodSpecs) {
  EXPECT_TRUE(validate_template_spec(good_spec()).ok());
  EXPECT_TRUE(validate_template_spec(full_spec()).ok()) << validate_template_spec(full_spec());
}

TEST(TemplateSpecValidation, RejectsVmRulesNamingTheField) {
  TemplateSpec s = good_spec();
  s.vcpus = 0;
  expect_invalid(validate_template_spec(s), "vcpus");
  s = good_spec();
  s.memory_bytes = 8 * kMiB;
  expect_invalid(validate_template_spec(s), "memory_bytes");
  s.memory_bytes = 32 * kMiB + 1;
  expect_invalid(validate_template_spec(s), "whole number of KiB");
  s = good_spec();
  s.boot_devices = {"usb"};
  expect_invalid(validate_template_spec(s), "'usb'");
  s = good_spec();
  s.arch = "x86 64";
  expect_invalid(validate_template_spec(s), "arch/machine");
  s = good_spec();
  s.nics = {{}, {.source = "bad name"}};
  expect_invalid(validate_template_spec(s), "nics[1].source");
  s = good_spec();
  s.nics = {{.model = "e1000;rm"}};
  expect_invalid(validate_template_spec(s), "nics[0].model");
  s = good_spec();
  s.description = "bell\x07";
  expect_invalid(validate_template_spec(s), "description");
  s.description = "bad \xc3(";
  expect_invalid(validate_template_spec(s), "description is not valid UTF-8");
}

TEST(TemplateSpecValidation, RejectsMacsBecauseEachInstanceGetsItsOwn) {
  TemplateSpec s = good_spec();
  s.nics = {{}, {.mac = "52:54:00:12:34:56"}};
  const Status st = validate_template_spec(s);
  expect_invalid(st, "nics[1].mac must be empty: each instance gets its own");
}

TEST(TemplateSpecValidation, DataDisksAreWholeMiB) {
  TemplateSpec s = good_spec();
  s.data_disks = {{.size_bytes = kMiB}, {.size_bytes = 0}};
  expect_invalid(validate_template_spec(s), "data_disks[1].size_bytes is 0");
  s.data_disks = {{.size_bytes = kMiB + 512}};
  expect_invalid(validate_template_spec(s), "data_disks[0].size_bytes");
  s.data_disks = {{.size_bytes = 5 * kMiB, .bus = static_cast<DiskBus>(9)}};
  expect_invalid(validate_template_spec(s), "data_disks[0].bus");
}

TEST(TemplateSpecValidation, MetadataKeysAreUniqueIdentifiersAndValuesPrintable) {
  TemplateSpec s = good_spec();
  s.metadata = {{"os", "debian"}, {"bad key", "x"}};
  expect_invalid(validate_template_spec(s), "metadata[1].key 'bad key'");
  s.metadata = {{"os", "debian"}, {"tier", "web"}, {"os", "ubuntu"}};
  expect_invalid(validate_template_spec(s), "metadata[2].key 'os' appears twice");
  s.metadata = {{"", "x"}};
  expect_invalid(validate_template_spec(s), "metadata[0].key is empty");
  s.metadata = {{"long", std::string(1025, 'v')}};
  expect_invalid(validate_template_spec(s), "1025 bytes");
  s.metadata = {{"long", std::string(1024, 'v')}};
  EXPECT_TRUE(validate_template_spec(s).ok());
  s.metadata = {{"nl", "a\nb"}};
  expect_invalid(validate_template_spec(s), "metadata[0].value (key 'nl') contains the control character \\x0a");
  s.metadata = {{"bin", "\xff"}};
  expect_invalid(validate_template_spec(s), "not valid UTF-8");
}

TEST(TemplateRefParse, NameAloneIsTheLatest) {
  const Result<TemplateRef> r = TemplateRef::parse("web");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (TemplateRef{"web", 0}));
  EXPECT_EQ(r->to_string(), "web");
}

TEST(TemplateRefParse, NameAndVersion) {
  const Result<TemplateRef> r = TemplateRef::parse("web-tier.v2:17");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, (TemplateRef{"web-tier.v2", 17}));
  EXPECT_EQ(r->to_string(), "web-tier.v2:17");
  EXPECT_EQ(TemplateRef::parse("web:4294967295")->version, 4294967295U);
}

TEST(TemplateRefParse, RejectsBadTextNamingIt) {
  expect_invalid(TemplateRef::parse("").status(), "template reference '': template name is empty");
  expect_invalid(TemplateRef::parse("web:").status(), "template reference 'web:'");
  expect_invalid(TemplateRef::parse("web:").status(), "missing");
  expect_invalid(TemplateRef::parse("web:0").status(), "version '0' is not a positive number");
  expect_invalid(TemplateRef::parse("web:-1").status(), "version '-1' is not a positive number");
  expect_invalid(TemplateRef::parse("web:x").status(), "version 'x' is not a positive number");
  expect_invalid(TemplateRef::parse("web:1x").status(), "'1x'");
  expect_invalid(TemplateRef::parse("web:+1").status(), "'+1'");
  expect_invalid(TemplateRef::parse("web:1:2").status(), "'1:2'");
  expect_invalid(TemplateRef::parse("web:4294967296").status(), "too large");
  expect_invalid(TemplateRef::parse(":3").status(), "template name is empty");
  expect_invalid(TemplateRef::parse("bad name:3").status(), "'bad name'");
}

TEST(TemplateJson, SpecRoundTripsExactly) {
  const TemplateSpec spec = full_spec();
  const std::string text = template_spec_to_json(spec);
  const Result<TemplateSpec> back = template_spec_from_json(text);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  EXPECT_EQ(*back, spec);
  EXPECT_EQ(template_spec_to_json(*back), text);
  EXPECT_EQ(text.find('\n'), std::string::npos) << "one line by default";
  // Pretty-printed is the same value.
  const Result<TemplateSpec> pretty = template_spec_from_json(template_spec_to_json(spec, 2));
  ASSERT_TRUE(pretty.ok()) << pretty.status();
  EXPECT_EQ(*pretty, spec);
}

TEST(TemplateJson, SpecUsesTheDocumentedFieldNames) {
  const std::string text = template_spec_to_json(full_spec());
  for (const char* field :
       {"\"vcpus\":4", "\"memory_bytes\":17592186044416", "\"arch\":\"aarch64\"", "\"machine\":\"virt-7.2\"",
        "\"boot_devices\":[\"network\",\"hd\"]", "\"base_disk_bus\":\"scsi\"",
        "\"data_disks\":[{\"size_bytes\":10737418240,\"bus\":\"virtio\"}",
        "{\"type\":\"bridge\",\"source\":\"br0\",\"model\":\"e1000\"}",
        "\"metadata\":{\"zeta\":\"last\",\"os\":\"debian-12\""}) {
    EXPECT_NE(text.find(field), std::string::npos) << field << " in " << text;
  }
  EXPECT_EQ(text.find("\"mac\""), std::string::npos) << text;
}

TEST(TemplateJson, MissingSpecFieldsTakeTheDefaults) {
  const Result<TemplateSpec> spec = template_spec_from_json(R"({"memory_bytes": 536870912})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  TemplateSpec expected;
  expected.memory_bytes = 512 * kMiB;
  EXPECT_EQ(*spec, expected);
  const Result<TemplateSpec> nic = template_spec_from_json(R"({"memory_bytes": 536870912, "nics": [{}]})");
  ASSERT_TRUE(nic.ok()) << nic.status();
  ASSERT_EQ(nic->nics.size(), 1U);
  EXPECT_EQ(nic->nics[0], NicSpec{});
}

TEST(TemplateJson, InfoRoundTripsExactly) {
  const TemplateInfo info = full_info();
  const std::string text = template_info_to_json(info);
  const Result<TemplateInfo> back = template_info_from_json(text);
  ASSERT_TRUE(back.ok()) << back.status() << "\n" << text;
  EXPECT_EQ(*back, info);
  EXPECT_EQ(template_info_to_json(*back), text);
  for (const char* field : {"\"name\":\"web\"", "\"version\":42", "\"spec\":{", "\"sha256\":\"aaaa",
                            "\"format\":\"raw\"", "\"size_bytes\":18446744073709551615",
                            "\"virtual_size_bytes\":4294967296", "\"created_ns\":-5", "\"origin\":\"import /srv"}) {
    EXPECT_NE(text.find(field), std::string::npos) << field << " in " << text;
  }
}

TEST(TemplateJson, DecodingErrorsNameTheField) {
  const auto spec_error = [](const std::string& text) { return template_spec_from_json(text).status(); };
  expect_invalid(spec_error(R"({"memory_bytes": 536870912, "nics": [{"type": "tap"}]})"),
                 "nics[0].type 'tap' is not one of network, bridge, ethernet");
  expect_invalid(spec_error(R"({"memory_bytes": 536870912, "base_disk_bus": "usb"})"),
                 "base_disk_bus 'usb' is not one of virtio, sata, scsi, ide");
  expect_invalid(spec_error(R"({"memory_bytes": "512M"})"), "memory_bytes is a string; expected a whole number");
  expect_invalid(spec_error(R"({"memory_bytes": -1})"), "memory_bytes is -1");
  expect_invalid(spec_error(R"({"memory_bytes": 1.5})"), "memory_bytes is 1.5");
  expect_invalid(spec_error(R"({"vcpus": 4294967296, "memory_bytes": 536870912})"), "vcpus is 4294967296");
  expect_invalid(spec_error(R"({"memory_bytes": 536870912, "data_disks": [{"size_bytes": 1048576}, {"bus": 3}]})"),
                 "data_disks[1].bus is 3; expected a string");
  expect_invalid(spec_error(R"({"memory_bytes": 536870912, "boot_devices": ["hd", null]})"),
                 "boot_devices[1] is a null; expected a string");
  expect_invalid(spec_error(R"({"memory_bytes": 536870912, "metadata": {"os": 12}})"), "metadata 'os' is 12");
  expect_invalid(spec_error(R"({"memory_bytes": 536870912, "metadata": []})"), "metadata is an array");
  expect_invalid(spec_error(R"({"memory_bytes": 536870912, "nics": {}})"), "nics is an object; expected an array");
  expect_invalid(spec_error(R"({"memory_bytes": 536870912, "nics": [{"mac": "52:54:00:12:34:56"}]})"),
                 "nics[0].mac must not be given");
  expect_invalid(spec_error("[1, 2]"), "template spec JSON is an array; expected an object");
  expect_invalid(spec_error(R"({"memory_bytes": )"), "template spec JSON is malformed");
  // Decoded specs are validated.
  expect_invalid(spec_error(R"({"memory_bytes": 1024})"), "memory_bytes is 1024");
  expect_invalid(spec_error(R"({"memory_bytes": 536870912, "data_disks": [{"size_bytes": 1000}]})"),
                 "data_disks[0].size_bytes is 1000");
}

TEST(TemplateJson, UnknownAndRepeatedFieldsAreRejected) {
  expect_invalid(template_spec_from_json(R"({"memroy_bytes": 536870912})").status(),
                 "'memroy_bytes' is not a field of a template spec");
  expect_invalid(template_spec_from_json(R"({"memory_bytes": 536870912, "nics": [{"modle": "e1000"}]})").status(),
                 "'nics[0].modle' is not a field of a NIC");
  expect_invalid(template_spec_from_json(R"({"memory_bytes": 536870912, "memory_bytes": 1073741824})").status(),
                 "the field 'memory_bytes' twice");
  expect_invalid(template_spec_from_json(R"({"memory_bytes": 536870912, "metadata": {"a": "1", "a": "2"}})").status(),
                 "'a' twice");
  std::string info = template_info_to_json(full_info());
  info.insert(info.size() - 1, R"(,"signature":"x")");
  expect_invalid(template_info_from_json(info).status(), "'signature' is not a field of template info");
  std::string image = template_info_to_json(full_info());
  image.replace(image.find("\"format\""), 8, "\"fromat\"");
  expect_invalid(template_info_from_json(image).status(), "'image.fromat' is not a field of an image");
}

TEST(TemplateJson, InfoErrorsNameTheField) {
  const auto info_error = [](const std::string& from, const std::string& to) {
    std::string text = template_info_to_json(full_info());
    const std::size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    text.replace(at, from.size(), to);
    return template_info_from_json(text).status();
  };
  expect_invalid(info_error("\"version\":42", "\"version\":0"), "version is 0");
  expect_invalid(info_error("\"name\":\"web\"", "\"name\":\"bad name\""), "name: template name 'bad name'");
  expect_invalid(info_error("\"format\":\"raw\"", "\"format\":\"vmdk\""), "image.format 'vmdk' is not one of");
  expect_invalid(info_error("\"sha256\":\"aaaa", "\"sha256\":\"AAAA"), "image.sha256");
  expect_invalid(info_error("\"created_ns\":-5", "\"created_ns\":\"now\""), "created_ns is a string");
  expect_invalid(info_error("\"created_ns\":-5,", ""), "created_ns is missing");
  expect_invalid(info_error("\"type\":\"bridge\"", "\"type\":\"tap\""), "spec.nics[0].type 'tap'");
  expect_invalid(info_error("\"vcpus\":4", "\"vcpus\":0"), "spec: vcpus is 0");
}

}  // namespace
}  // namespace cloudmgr
