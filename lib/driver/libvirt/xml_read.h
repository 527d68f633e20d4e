// Reading libvirt's XML: a parsed document walked directly (no XPath: compiling and
// evaluating XPath expressions cost three times what libvirt itself spends producing the XML).
// Internal to the libvirt driver; shared by the domain, snapshot and volume readers.
#pragma once

#include <libxml/tree.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cloudmgr/status.h"

namespace cloudmgr::libvirt {

using Doc = std::unique_ptr<xmlDoc, void (*)(xmlDocPtr)>;

// kInternal naming `what` when libvirt's XML does not parse.
Result<Doc> parse_xml(std::string_view xml, std::string_view what);
bool named(xmlNodePtr node, const char* name);
// Element children of `parent` called `name`.
std::vector<xmlNodePtr> children(xmlNodePtr parent, const char* name);
xmlNodePtr child(xmlNodePtr parent, const char* name);
// Follows a path of element names from `node`.
xmlNodePtr path(xmlNodePtr node, std::initializer_list<const char*> names);
std::string text(xmlNodePtr node);
std::string attr(xmlNodePtr node, const char* name);
// The first non-empty attribute of `node` among `names`.
std::string first_attr(xmlNodePtr node, std::initializer_list<const char*> names);

}  // namespace cloudmgr::libvirt
