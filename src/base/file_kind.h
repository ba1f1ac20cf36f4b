// Inputs cotune cannot read (yet), recognised by their first bytes or their name, so that an error says what a
// file is ("GGUF files are not supported by this build yet") instead of "malformed JSON" or "no safetensors".
// A reader for a new format (GGUF) removes its line from unsupported_input() when it lands.
//
//   if (auto why = base::unsupported_input(path)) fail("{}", *why);          // one file given by the user
//   if (auto why = base::unsupported_in_folder(dir)) msg += "\n  " + *why;   // a folder that lacks what we read
#pragma once
#include <optional>
#include <string>

namespace cotune::base {

enum class FileKind { other, parquet, gguf, pytorch_pickle };

// From the first bytes (PAR1, GGUF, a zip or pickle stream named *.bin / *.pt / *.pth); other when unreadable.
// (Parquet is read since src/data/parquet*: it is recognised here so a Parquet file given as a model is named.)
FileKind sniff_file_kind(const std::string& path);

// A message naming the file and what to do instead, when `path` is a regular file of a kind cotune cannot read.
std::optional<std::string> unsupported_input(const std::string& path);

// The same for a folder: names its files of unsupported kinds (pytorch_model.bin, *.gguf).
std::optional<std::string> unsupported_in_folder(const std::string& dir);

}  // namespace cotune::base
