// Where a JSON text stops being valid, as "line L, column C: what", for error messages that name the
// spot (simdjson, our fast parser, reports only the kind of error). Used on the error path only.
#pragma once
#include <string>
#include <string_view>

namespace cotune {

// "line 3, column 14: syntax error while parsing object - unexpected '}'; expected string literal", or
// "" when `text` is valid JSON. Columns count bytes from 1.
std::string json_syntax_error(std::string_view text);

// Line and column (both from 1) of byte `offset` of `text`, as "line L, column C".
std::string text_position(std::string_view text, size_t offset);

}  // namespace cotune
