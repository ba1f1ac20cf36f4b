// Appending JSON text: the record readers of non-JSON formats (CSV, Parquet) hand each row on as JSON object text,
// so that every later stage reads one record format. Bytes >= 0x80 are copied as they are (invalid UTF-8 is caught
// where records are parsed, with the record's location); quotes, backslashes and control characters are escaped.
#pragma once
#include <string>
#include <string_view>

namespace cotune::data {

// Appends `s` as a JSON string literal, quotes included.
void append_json_string(std::string& out, std::string_view s);

}  // namespace cotune::data
