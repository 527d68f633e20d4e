#include "driver/libvirt/xml_read.h"

#include <libxml/parser.h>

#include <limits>

#include <fmt/format.h>

namespace cloudmgr::libvirt {

Result<Doc> parse_xml(std::string_view xml, std::string_view what) {
  if (xml.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    return invalid_argument_error(fmt::format("{} XML is too large", what));
  }
  xmlDocPtr doc = xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "libvirt.xml", nullptr,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
  if (doc == nullptr || xmlDocGetRootElement(doc) == nullptr) {
    xmlFreeDoc(doc);
    return internal_error(fmt::format("libvirt returned {} XML that does not parse", what));
  }
  return Doc(doc, xmlFreeDoc);
}

bool named(xmlNodePtr node, const char* name) {
  return node != nullptr && node->type == XML_ELEMENT_NODE &&
         xmlStrEqual(node->name, reinterpret_cast<const xmlChar*>(name)) != 0;  // NOLINT
}

// Element children of `parent` called `name`.
std::vector<xmlNodePtr> children(xmlNodePtr parent, const char* name) {
  std::vector<xmlNodePtr> out;
  for (xmlNodePtr c = parent != nullptr ? parent->children : nullptr; c != nullptr; c = c->next) {
    if (named(c, name)) {
      out.push_back(c);
    }
  }
  return out;
}

xmlNodePtr child(xmlNodePtr parent, const char* name) {
  for (xmlNodePtr c = parent != nullptr ? parent->children : nullptr; c != nullptr; c = c->next) {
    if (named(c, name)) {
      return c;
    }
  }
  return nullptr;
}

// Follows a path of element names from `node`.
xmlNodePtr path(xmlNodePtr node, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    node = child(node, n);
  }
  return node;
}

std::string text(xmlNodePtr node) {
  if (node == nullptr) {
    return {};
  }
  xmlChar* value = xmlNodeGetContent(node);
  std::string out = value != nullptr ? reinterpret_cast<const char*>(value) : "";  // NOLINT
  xmlFree(value);
  return out;
}

std::string attr(xmlNodePtr node, const char* name) {
  if (node == nullptr) {
    return {};
  }
  xmlChar* value = xmlGetProp(node, reinterpret_cast<const xmlChar*>(name));       // NOLINT
  std::string out = value != nullptr ? reinterpret_cast<const char*>(value) : "";  // NOLINT
  xmlFree(value);
  return out;
}

// The first non-empty attribute of `node` among `names`.
std::string first_attr(xmlNodePtr node, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    std::string v = attr(node, n);
    if (!v.empty()) {
      return v;
    }
  }
  return {};
}

}  // namespace cloudmgr::libvirt
