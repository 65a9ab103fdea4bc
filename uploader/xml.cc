#include "uploader/xml.h"

#include <expat.h>

#include <memory>

namespace scribefs {
namespace {

constexpr size_t kMaxDepth = 64;

struct ParseState {
  XML_Parser parser = nullptr;
  XmlElement root;
  std::vector<XmlElement*> stack;  // open elements; stack[0] is &root once seen
  bool seen_root = false;
  std::string error;
};

void OnStart(void* data, const XML_Char* name, const XML_Char** /*attributes*/) {
  auto* st = static_cast<ParseState*>(data);
  if (st->stack.size() >= kMaxDepth) {
    st->error = "document nested too deeply";
    XML_StopParser(st->parser, XML_FALSE);
    return;
  }
  if (st->stack.empty()) {
    if (st->seen_root) return;  // expat rejects a second root itself
    st->seen_root = true;
    st->root.name = name;
    st->stack.push_back(&st->root);
    return;
  }
  XmlElement* parent = st->stack.back();
  parent->children.push_back(XmlElement{name, {}, {}});
  st->stack.push_back(&parent->children.back());
}

void OnEnd(void* data, const XML_Char* /*name*/) {
  auto* st = static_cast<ParseState*>(data);
  if (!st->stack.empty()) st->stack.pop_back();
}

void OnText(void* data, const XML_Char* s, int len) {
  auto* st = static_cast<ParseState*>(data);
  if (!st->stack.empty()) st->stack.back()->text.append(s, static_cast<size_t>(len));
}

struct ParserDeleter {
  void operator()(XML_ParserStruct* p) const { XML_ParserFree(p); }
};

}  // namespace

const XmlElement* XmlElement::Child(std::string_view child_name) const {
  for (const auto& c : children) {
    if (c.name == child_name) return &c;
  }
  return nullptr;
}

std::string XmlElement::ChildText(std::string_view child_name) const {
  const XmlElement* c = Child(child_name);
  return c ? c->text : std::string();
}

std::vector<const XmlElement*> XmlElement::Children(std::string_view child_name) const {
  std::vector<const XmlElement*> out;
  for (const auto& c : children) {
    if (c.name == child_name) out.push_back(&c);
  }
  return out;
}

Result<XmlElement> ParseXml(std::string_view document) {
  std::unique_ptr<XML_ParserStruct, ParserDeleter> parser(XML_ParserCreate("UTF-8"));
  if (!parser) return Status::Error(ENOMEM, "XML parser: out of memory");
  ParseState st;
  st.parser = parser.get();
  XML_SetUserData(parser.get(), &st);
  XML_SetElementHandler(parser.get(), OnStart, OnEnd);
  XML_SetCharacterDataHandler(parser.get(), OnText);
  // The stack holds pointers into the tree. They stay valid: only the innermost
  // open element's children vector grows, and none of its children is open.
  if (document.size() > static_cast<size_t>(INT32_MAX)) {
    return Status::Error(EPROTO, "XML document too large");
  }
  XML_Status rc =
      XML_Parse(parser.get(), document.data(), static_cast<int>(document.size()), XML_TRUE);
  if (!st.error.empty()) return Status::Error(EPROTO, "XML: " + st.error);
  if (rc != XML_STATUS_OK) {
    return Status::Error(EPROTO, std::string("XML: ") +
                                     XML_ErrorString(XML_GetErrorCode(parser.get())) + " at line " +
                                     std::to_string(XML_GetCurrentLineNumber(parser.get())));
  }
  if (!st.seen_root) return Status::Error(EPROTO, "XML: empty document");
  return std::move(st.root);
}

std::string XmlEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      case '\r':
        out += "&#13;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

}  // namespace scribefs
