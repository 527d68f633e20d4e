// The JSON codec of templates (declared in cloudmgr/templates.h). Objects are nlohmann::ordered_json, so
// fields are written in a fixed order and metadata keeps its order through a round trip.
#include "cloudmgr/templates.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/status_macros.h"
#include "core/text.h"

namespace cloudmgr {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::array kBuses = {DiskBus::kVirtio, DiskBus::kSata, DiskBus::kScsi, DiskBus::kIde};
constexpr std::array kNicTypes = {NicType::kNetwork, NicType::kBridge, NicType::kEthernet};

// The value of `Enum` whose to_string is `text`.
template <typename Enum, std::size_t N>
std::optional<Enum> parse_enum(const std::array<Enum, N>& values, std::string_view text) {
  for (const Enum v : values) {
    if (to_string(v) == text) {
      return v;
    }
  }
  return std::nullopt;
}

template <typename Enum, std::size_t N>
std::string one_of(const std::array<Enum, N>& values) {
  std::string out;
  for (const Enum v : values) {
    out += out.empty() ? "" : ", ";
    out += to_string(v);
  }
  return out;
}

std::string field_path(std::string_view object_path, std::string_view key) {
  return object_path.empty() ? std::string(key) : fmt::format("{}.{}", object_path, key);
}

// "a string", "an array", "-3", "1.5": what was found instead, for error messages.
std::string describe(const Json& j) {
  if (j.is_number()) {
    return j.dump();
  }
  const std::string_view type = j.type_name();
  return fmt::format("{} {}", type == "object" || type == "array" ? "an" : "a", type);
}

// `j` at `path` must be an object whose keys are all among `fields`.
Status expect_object(const Json& j, std::string_view path, std::string_view what,
                     std::initializer_list<std::string_view> fields) {
  if (!j.is_object()) {
    return invalid_argument_error(path.empty()
                                      ? fmt::format("{} JSON is {}; expected an object", what, describe(j))
                                      : fmt::format("{} is {}; expected an object ({})", path, describe(j), what));
  }
  for (const auto& [key, value] : j.items()) {
    if (std::find(fields.begin(), fields.end(), key) == fields.end()) {
      std::string known;
      for (const std::string_view f : fields) {
        known += known.empty() ? "" : ", ";
        known += f;
      }
      return invalid_argument_error(
          fmt::format("{} is not a field of {}; the fields are {}", quote_input(field_path(path, key)), what, known));
    }
  }
  return {};
}

// The member `key` of object `obj`, or null when absent: an error if it is required.
Result<const Json*> member(const Json& obj, std::string_view path, std::string_view key, bool required) {
  const auto it = obj.find(key);
  if (it == obj.end()) {
    if (required) {
      return invalid_argument_error(fmt::format("{} is missing", field_path(path, key)));
    }
    return static_cast<const Json*>(nullptr);
  }
  return &*it;
}

Status read_string(const Json& j, const std::string& path, std::string& out) {
  if (!j.is_string()) {
    return invalid_argument_error(fmt::format("{} is {}; expected a string", path, describe(j)));
  }
  out = j.get_ref<const std::string&>();
  return {};
}

Status read_uint(const Json& j, const std::string& path, std::uint64_t max, std::uint64_t& out) {
  if (!j.is_number_unsigned()) {
    return invalid_argument_error(fmt::format("{} is {}; expected a whole number of at least 0", path, describe(j)));
  }
  const auto v = j.get<std::uint64_t>();
  if (v > max) {
    return invalid_argument_error(fmt::format("{} is {}; at most {} is allowed", path, v, max));
  }
  out = v;
  return {};
}

Status read_u32(const Json& j, const std::string& path, std::uint32_t& out) {
  std::uint64_t v = 0;
  CLOUDMGR_RETURN_IF_ERROR(read_uint(j, path, std::numeric_limits<std::uint32_t>::max(), v));
  out = static_cast<std::uint32_t>(v);
  return {};
}

Status read_u64(const Json& j, const std::string& path, std::uint64_t& out) {
  return read_uint(j, path, std::numeric_limits<std::uint64_t>::max(), out);
}

Status read_i64(const Json& j, const std::string& path, std::int64_t& out) {
  if (j.is_number_integer() && !j.is_number_unsigned()) {
    out = j.get<std::int64_t>();
    return {};
  }
  std::uint64_t v = 0;
  if (!j.is_number_unsigned()) {
    return invalid_argument_error(fmt::format("{} is {}; expected a whole number", path, describe(j)));
  }
  CLOUDMGR_RETURN_IF_ERROR(read_uint(j, path, std::numeric_limits<std::int64_t>::max(), v));
  out = static_cast<std::int64_t>(v);
  return {};
}

template <typename Enum, std::size_t N>
Status read_enum(const Json& j, const std::string& path, const std::array<Enum, N>& values, Enum& out) {
  std::string text;
  CLOUDMGR_RETURN_IF_ERROR(read_string(j, path, text));
  const std::optional<Enum> v = parse_enum(values, text);
  if (!v) {
    return invalid_argument_error(fmt::format("{} {} is not one of {}", path, quote_input(text), one_of(values)));
  }
  out = *v;
  return {};
}

// Reads the optional member `key` of `obj` with `read(member, path, out)`; absent leaves out as it is.
template <typename Read, typename T>
Status optional_field(const Json& obj, std::string_view path, std::string_view key, Read&& read, T& out) {
  CLOUDMGR_ASSIGN_OR_RETURN(const Json* j, member(obj, path, key, /*required=*/false));
  return j == nullptr ? Status() : read(*j, field_path(path, key), out);
}

template <typename Read, typename T>
Status required_field(const Json& obj, std::string_view path, std::string_view key, Read&& read, T& out) {
  CLOUDMGR_ASSIGN_OR_RETURN(const Json* j, member(obj, path, key, /*required=*/true));
  return read(*j, field_path(path, key), out);
}

// Each element of the array `j` at `path` with `read(element, "path[i]", out[i])`.
template <typename T, typename Read>
Status read_array(const Json& j, const std::string& path, Read&& read, std::vector<T>& out) {
  if (!j.is_array()) {
    return invalid_argument_error(fmt::format("{} is {}; expected an array", path, describe(j)));
  }
  std::vector<T> items(j.size());
  for (std::size_t i = 0; i < j.size(); ++i) {
    CLOUDMGR_RETURN_IF_ERROR(read(j[i], fmt::format("{}[{}]", path, i), items[i]));
  }
  out = std::move(items);
  return {};
}

Status read_disk(const Json& j, const std::string& path, TemplateDisk& out) {
  CLOUDMGR_RETURN_IF_ERROR(expect_object(j, path, "a data disk", {"size_bytes", "bus"}));
  CLOUDMGR_RETURN_IF_ERROR(optional_field(j, path, "size_bytes", read_u64, out.size_bytes));
  return optional_field(
      j, path, "bus", [](const Json& v, const std::string& p, DiskBus& o) { return read_enum(v, p, kBuses, o); },
      out.bus);
}

Status read_nic(const Json& j, const std::string& path, NicSpec& out) {
  if (j.is_object() && j.contains("mac")) {
    return invalid_argument_error(
        fmt::format("{}.mac must not be given: a template's NICs have no MAC, each instance gets its own", path));
  }
  CLOUDMGR_RETURN_IF_ERROR(expect_object(j, path, "a NIC", {"type", "source", "model"}));
  CLOUDMGR_RETURN_IF_ERROR(optional_field(
      j, path, "type", [](const Json& v, const std::string& p, NicType& o) { return read_enum(v, p, kNicTypes, o); },
      out.type));
  CLOUDMGR_RETURN_IF_ERROR(optional_field(j, path, "source", read_string, out.source));
  return optional_field(j, path, "model", read_string, out.model);
}

Status read_metadata(const Json& j, const std::string& path, std::vector<std::pair<std::string, std::string>>& out) {
  if (!j.is_object()) {
    return invalid_argument_error(fmt::format("{} is {}; expected an object of strings", path, describe(j)));
  }
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto& [key, value] : j.items()) {
    if (!value.is_string()) {
      return invalid_argument_error(
          fmt::format("{} {} is {}; expected a string", path, quote_input(key), describe(value)));
    }
    items.emplace_back(key, value.get_ref<const std::string&>());
  }
  out = std::move(items);
  return {};
}

// Decodes (does not validate) a spec at `path` ("" at the top).
Status read_spec(const Json& j, const std::string& path, TemplateSpec& out) {
  CLOUDMGR_RETURN_IF_ERROR(expect_object(j, path, "a template spec",
                                         {"vcpus", "memory_bytes", "arch", "machine", "boot_devices", "base_disk_bus",
                                          "data_disks", "nics", "description", "metadata"}));
  TemplateSpec spec;
  CLOUDMGR_RETURN_IF_ERROR(optional_field(j, path, "vcpus", read_u32, spec.vcpus));
  CLOUDMGR_RETURN_IF_ERROR(optional_field(j, path, "memory_bytes", read_u64, spec.memory_bytes));
  CLOUDMGR_RETURN_IF_ERROR(optional_field(j, path, "arch", read_string, spec.arch));
  CLOUDMGR_RETURN_IF_ERROR(optional_field(j, path, "machine", read_string, spec.machine));
  CLOUDMGR_RETURN_IF_ERROR(optional_field(
      j, path, "boot_devices",
      [](const Json& v, const std::string& p, std::vector<std::string>& o) {
        return read_array<std::string>(v, p, read_string, o);
      },
      spec.boot_devices));
  CLOUDMGR_RETURN_IF_ERROR(optional_field(
      j, path, "base_disk_bus",
      [](const Json& v, const std::string& p, DiskBus& o) { return read_enum(v, p, kBuses, o); }, spec.base_disk_bus));
  CLOUDMGR_RETURN_IF_ERROR(optional_field(
      j, path, "data_disks",
      [](const Json& v, const std::string& p, std::vector<TemplateDisk>& o) {
        return read_array<TemplateDisk>(v, p, read_disk, o);
      },
      spec.data_disks));
  CLOUDMGR_RETURN_IF_ERROR(optional_field(
      j, path, "nics",
      [](const Json& v, const std::string& p, std::vector<NicSpec>& o) {
        return read_array<NicSpec>(v, p, read_nic, o);
      },
      spec.nics));
  CLOUDMGR_RETURN_IF_ERROR(optional_field(j, path, "description", read_string, spec.description));
  CLOUDMGR_RETURN_IF_ERROR(optional_field(j, path, "metadata", read_metadata, spec.metadata));
  out = std::move(spec);
  return {};
}

Status read_format(const Json& j, const std::string& path, ImageFormat& out) {
  std::string text;
  CLOUDMGR_RETURN_IF_ERROR(read_string(j, path, text));
  Result<ImageFormat> format = parse_image_format(text);
  if (!format.ok()) {
    return invalid_argument_error(fmt::format("{} {} is not one of qcow2, raw", path, quote_input(text)));
  }
  out = *format;
  return {};
}

Status read_image(const Json& j, const std::string& path, ImageInfo& out) {
  CLOUDMGR_RETURN_IF_ERROR(
      expect_object(j, path, "an image", {"sha256", "format", "size_bytes", "virtual_size_bytes"}));
  CLOUDMGR_RETURN_IF_ERROR(required_field(j, path, "sha256", read_string, out.sha256));
  if (Status s = validate_sha256(out.sha256); !s.ok()) {
    return s.with_context(field_path(path, "sha256"));
  }
  CLOUDMGR_RETURN_IF_ERROR(required_field(j, path, "format", read_format, out.format));
  CLOUDMGR_RETURN_IF_ERROR(required_field(j, path, "size_bytes", read_u64, out.size_bytes));
  return required_field(j, path, "virtual_size_bytes", read_u64, out.virtual_size_bytes);
}

// Parses `text`; an object with a repeated key is refused (nlohmann would keep one silently).
Result<Json> parse(std::string_view text, std::string_view what) {
  std::vector<std::set<std::string>> open_objects;
  std::optional<std::string> repeated;
  const auto note = [&](int /*depth*/, nlohmann::json::parse_event_t event, Json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start) {
      open_objects.emplace_back();
    } else if (event == Event::object_end && !open_objects.empty()) {
      open_objects.pop_back();
    } else if (event == Event::key && !open_objects.empty() && !repeated && parsed.is_string()) {
      if (!open_objects.back().insert(parsed.get_ref<const std::string&>()).second) {
        repeated = parsed.get_ref<const std::string&>();
      }
    }
    return true;
  };
  Json j;
  try {
    j = Json::parse(text, note);
  } catch (const nlohmann::json::exception& e) {
    return invalid_argument_error(fmt::format("{} JSON is malformed: {}", what, e.what()));
  }
  if (repeated) {
    return invalid_argument_error(fmt::format("{} JSON has the field {} twice", what, quote_input(*repeated)));
  }
  return j;
}

Json spec_json(const TemplateSpec& spec) {
  Json disks = Json::array();
  for (const TemplateDisk& d : spec.data_disks) {
    disks.push_back(Json{{"size_bytes", d.size_bytes}, {"bus", to_string(d.bus)}});
  }
  Json nics = Json::array();
  for (const NicSpec& n : spec.nics) {
    nics.push_back(Json{{"type", to_string(n.type)}, {"source", n.source}, {"model", n.model}});
  }
  Json metadata = Json::object();
  for (const auto& [key, value] : spec.metadata) {
    metadata[key] = value;
  }
  Json j = Json::object();
  j["vcpus"] = spec.vcpus;
  j["memory_bytes"] = spec.memory_bytes;
  j["arch"] = spec.arch;
  j["machine"] = spec.machine;
  j["boot_devices"] = spec.boot_devices;
  j["base_disk_bus"] = to_string(spec.base_disk_bus);
  j["data_disks"] = std::move(disks);
  j["nics"] = std::move(nics);
  j["description"] = spec.description;
  j["metadata"] = std::move(metadata);
  return j;
}

std::string dump(const Json& j, int indent) {
  return j.dump(indent < 0 ? -1 : indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace

std::string template_spec_to_json(const TemplateSpec& spec, int indent) { return dump(spec_json(spec), indent); }

Result<TemplateSpec> template_spec_from_json(std::string_view text) {
  CLOUDMGR_ASSIGN_OR_RETURN(const Json j, parse(text, "template spec"));
  TemplateSpec spec;
  CLOUDMGR_RETURN_IF_ERROR(read_spec(j, "", spec));
  CLOUDMGR_RETURN_IF_ERROR(validate_template_spec(spec));
  return spec;
}

std::string template_info_to_json(const TemplateInfo& info, int indent) {
  Json j = Json::object();
  j["name"] = info.name;
  j["version"] = info.version;
  j["spec"] = spec_json(info.spec);
  j["image"] = Json{{"sha256", info.image.sha256},
                    {"format", to_string(info.image.format)},
                    {"size_bytes", info.image.size_bytes},
                    {"virtual_size_bytes", info.image.virtual_size_bytes}};
  j["created_ns"] = info.created_ns;
  j["origin"] = info.origin;
  return dump(j, indent);
}

Result<TemplateInfo> template_info_from_json(std::string_view text) {
  CLOUDMGR_ASSIGN_OR_RETURN(const Json j, parse(text, "template info"));
  CLOUDMGR_RETURN_IF_ERROR(
      expect_object(j, "", "template info", {"name", "version", "spec", "image", "created_ns", "origin"}));
  TemplateInfo info;
  CLOUDMGR_RETURN_IF_ERROR(required_field(j, "", "name", read_string, info.name));
  if (Status s = validate_template_name(info.name); !s.ok()) {
    return s.with_context("name");
  }
  CLOUDMGR_RETURN_IF_ERROR(required_field(j, "", "version", read_u32, info.version));
  if (info.version == 0) {
    return invalid_argument_error("version is 0; versions start at 1");
  }
  CLOUDMGR_RETURN_IF_ERROR(required_field(j, "", "spec", read_spec, info.spec));
  if (Status s = validate_template_spec(info.spec); !s.ok()) {
    return s.with_context("spec");
  }
  CLOUDMGR_RETURN_IF_ERROR(required_field(j, "", "image", read_image, info.image));
  CLOUDMGR_RETURN_IF_ERROR(required_field(j, "", "created_ns", read_i64, info.created_ns));
  CLOUDMGR_RETURN_IF_ERROR(optional_field(j, "", "origin", read_string, info.origin));
  return info;
}

}  // namespace cloudmgr
