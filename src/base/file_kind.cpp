#include "base/file_kind.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

namespace cotune::base {
namespace fs = std::filesystem;

FileKind sniff_file_kind(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return FileKind::other;
  std::ifstream in(path, std::ios::binary);
  char head[4] = {};
  in.read(head, sizeof head);
  const std::string magic(head, static_cast<size_t>(in.gcount()));
  if (magic == "PAR1") return FileKind::parquet;
  if (magic == "GGUF") return FileKind::gguf;
  const std::string ext = fs::path(path).extension().string();
  const bool torch_name = ext == ".bin" || ext == ".pt" || ext == ".pth";
  // torch.save writes a zip archive (PK\3\4) since PyTorch 1.6, a bare pickle (0x80, protocol 2..5) before.
  const bool zip = magic == std::string("PK\x03\x04", 4);
  const bool pickle = magic.size() >= 2 && static_cast<unsigned char>(magic[0]) == 0x80 && magic[1] >= 2 && magic[1] <= 5;
  if (torch_name && (zip || pickle)) return FileKind::pytorch_pickle;
  return FileKind::other;
}

std::optional<std::string> unsupported_input(const std::string& path) {
  switch (sniff_file_kind(path)) {
    case FileKind::gguf:
      return fmt::format("{}: GGUF files are not supported by this build yet; give the Hugging Face model folder "
                         "(config.json + *.safetensors)",
                         path);
    case FileKind::pytorch_pickle:
      return fmt::format("{}: pytorch_model.bin (pickle) is not supported, convert to safetensors (transformers: "
                         "model.save_pretrained(folder, safe_serialization=True))",
                         path);
    case FileKind::parquet:  // data: read by src/data (a Parquet file where a model belongs fails there)
    case FileKind::other:
      break;
  }
  return std::nullopt;
}

std::optional<std::string> unsupported_in_folder(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> found;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
    if (unsupported_input(it->path().string())) found.push_back(it->path().string());
  }
  if (found.empty()) return std::nullopt;
  std::sort(found.begin(), found.end());
  return unsupported_input(found.front());
}

}  // namespace cotune::base
