// Read-only memory-mapped file (RAII). Empty files map to an empty span.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace cotune {

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);  // throws Error naming the path
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole file into a string; throws Error naming the path. Anything but a regular file (a FIFO, a
// device, a folder) is refused before it is opened, since opening a FIFO blocks until a writer appears.
std::string read_file(const std::string& path);

// Throws Error naming `path` unless it is a regular file (following symlinks): "not a regular file (a FIFO)".
void require_regular_file(const std::string& path);

// Writes `bytes` to `path` atomically: a temp file in the same folder, fsync, then rename.
void write_file_atomic(const std::string& path, const void* bytes, size_t size);
inline void write_file_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text.data(), text.size());
}

}  // namespace cotune
