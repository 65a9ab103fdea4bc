// A minimal XML tree for S3 responses, parsed with libexpat (Debian libexpat1-dev).
// Element names are kept as written (S3's default namespace is ignored);
// text is the concatenated character data of an element, entities decoded.
// Thread-compatible.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace scribefs {

struct XmlElement {
  std::string name;
  std::string text;
  std::vector<XmlElement> children;

  // First child named `name`, or nullptr.
  const XmlElement* Child(std::string_view child_name) const;
  // Text of the first child named `name`, or "" when there is none.
  std::string ChildText(std::string_view child_name) const;
  // Every child named `name`, in document order.
  std::vector<const XmlElement*> Children(std::string_view child_name) const;
};

// Parses a whole document (at most 64 levels deep). EPROTO on malformed input.
Result<XmlElement> ParseXml(std::string_view document);

// Escapes & < > " ' for element text and attribute values.
std::string XmlEscape(std::string_view text);

}  // namespace scribefs
