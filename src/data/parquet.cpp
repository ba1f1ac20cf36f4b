#include "data/parquet.h"

#include <cstring>

#include "base/error.h"
#include "base/mmap.h"
#include "data/json_text.h"
#include "data/parquet_column.h"
#include "data/parquet_metadata.h"

namespace cotune::data {
namespace pq = parquet;

namespace {

constexpr int kMaxSchemaDepth = 64;

// One node of the schema tree. Leaves are the columns, numbered depth-first; a node's leaves are
// [first_leaf, leaf_end).
struct Node {
  std::string name;
  std::string key_json;  // "name": (escaped, with the colon)
  pq::Repetition repetition = pq::Repetition::required;
  int16_t def_level = 0, rep_level = 0;  // counting this node
  enum class Shape { leaf, object, list, map } shape = Shape::object;
  std::vector<int> children;
  int leaf = -1;
  int first_leaf = 0, leaf_end = 0;
  int repeated = -1;  // list / map: the repeated child
  int element = -1;   // list: the node each array element is made of (the repeated child or its only child)
};

}  // namespace

struct ParquetReader::Impl {
  std::string path;
  MappedFile file;
  size_t data_end = 0;  // where the footer starts
  pq::FileMetaData meta;
  std::vector<Node> nodes;  // nodes[0] is the root
  std::vector<pq::ColumnDescriptor> columns;

  size_t next_group = 0;       // the row group to open next
  int64_t group_rows_left = 0; // rows left in the open group
  int64_t open_group_index = -1;
  std::vector<std::unique_ptr<pq::ColumnChunkReader>> readers;
  std::vector<pq::ColumnRow> rows;
  std::vector<size_t> cursor;
  int64_t index = 0;  // records handed out or skipped so far
  std::string record;

  [[noreturn]] void corrupt_column(int leaf, std::string_view detail) const {
    fail("{}: column '{}': {}", path, columns[static_cast<size_t>(leaf)].path, detail);
  }

  // ---- schema ----

  int build(size_t& i, int parent, const std::string& prefix, int depth) {
    if (depth > kMaxSchemaDepth) fail("{}: corrupt schema: nested deeper than {} levels", path, kMaxSchemaDepth);
    if (i >= meta.schema.size()) fail("{}: corrupt schema: a group announces more children than the schema holds", path);
    const pq::SchemaElement& e = meta.schema[i++];
    int id = static_cast<int>(nodes.size());
    nodes.emplace_back();
    {
      Node& n = nodes.back();
      n.name = e.name;
      n.repetition = parent < 0 ? pq::Repetition::required : e.repetition;
      if (n.repetition != pq::Repetition::required && n.repetition != pq::Repetition::optional &&
          n.repetition != pq::Repetition::repeated)
        fail("{}: corrupt schema: field '{}' has repetition {}", path, e.name, static_cast<int>(e.repetition));
      int16_t pd = parent < 0 ? 0 : nodes[static_cast<size_t>(parent)].def_level;
      int16_t pr = parent < 0 ? 0 : nodes[static_cast<size_t>(parent)].rep_level;
      n.def_level = static_cast<int16_t>(pd + (n.repetition != pq::Repetition::required));
      n.rep_level = static_cast<int16_t>(pr + (n.repetition == pq::Repetition::repeated));
      append_json_string(n.key_json, e.name);
      n.key_json.push_back(':');
      n.first_leaf = static_cast<int>(columns.size());
    }
    std::string dotted = prefix.empty() ? e.name : prefix + "." + e.name;
    if (parent >= 0 && e.num_children == 0) {
      if (!e.has_type) fail("{}: corrupt schema: field '{}' is neither a group nor has a type", path, dotted);
      Node& n = nodes[static_cast<size_t>(id)];
      n.shape = Node::Shape::leaf;
      n.leaf = static_cast<int>(columns.size());
      columns.push_back(pq::describe_leaf(e, dotted, n.def_level, n.rep_level, path));
      n.leaf_end = n.leaf + 1;
      return id;
    }
    if (e.num_children < 0 || static_cast<size_t>(e.num_children) > meta.schema.size() - i)
      fail("{}: corrupt schema: group '{}' has {} children, but only {} schema elements follow", path, dotted,
           e.num_children, meta.schema.size() - i);
    std::vector<int> children;
    for (int32_t c = 0; c < e.num_children; ++c) children.push_back(build(i, id, parent < 0 ? "" : dotted, depth + 1));
    Node& n = nodes[static_cast<size_t>(id)];
    n.children = std::move(children);
    n.leaf_end = static_cast<int>(columns.size());
    if (n.leaf_end == n.first_leaf && parent >= 0) fail("{}: group '{}' has no columns", path, dotted);
    bool list_annotated = e.logical.kind == pq::LogicalType::Kind::list || e.converted == pq::ConvertedType::list;
    bool map_annotated = e.logical.kind == pq::LogicalType::Kind::map || e.converted == pq::ConvertedType::map ||
                         e.converted == pq::ConvertedType::map_key_value;
    int only = n.children.size() == 1 ? n.children[0] : -1;
    bool one_repeated = only >= 0 && nodes[static_cast<size_t>(only)].repetition == pq::Repetition::repeated;
    if (list_annotated && one_repeated) {
      const Node& r = nodes[static_cast<size_t>(only)];
      n.shape = Node::Shape::list;
      n.repeated = only;
      // The backward-compatibility rules of the LIST spec: a repeated leaf, a repeated group of several fields,
      // or one named "array" / "<list>_tuple" is itself the element; else its only child is (3-level lists).
      bool repeated_is_element = r.shape == Node::Shape::leaf || r.children.size() > 1 || r.name == "array" ||
                                 r.name == e.name + "_tuple";
      n.element = repeated_is_element ? only : r.children[0];
    } else if (map_annotated && one_repeated && nodes[static_cast<size_t>(only)].children.size() == 2 &&
               nodes[static_cast<size_t>(nodes[static_cast<size_t>(only)].children[0])].shape == Node::Shape::leaf) {
      n.shape = Node::Shape::map;
      n.repeated = only;
    } else {
      n.shape = Node::Shape::object;
    }
    return id;
  }

  void open(std::string p) {
    path = std::move(p);
    file = MappedFile(path);
    const uint8_t* d = file.data();
    size_t size = file.size();
    if (size < 12)
      fail("{}: not a Parquet file: {} bytes, too short for 'PAR1', a footer length and 'PAR1' (12 bytes)", path, size);
    if (std::memcmp(d, "PAR1", 4) != 0) fail("{}: not a Parquet file: it does not start with the magic 'PAR1'", path);
    if (std::memcmp(d + size - 4, "PARE", 4) == 0)
      fail("{}: the Parquet footer is encrypted ('PARE'); encrypted files are not supported", path);
    if (std::memcmp(d + size - 4, "PAR1", 4) != 0)
      fail("{}: truncated or corrupt Parquet file: it does not end with the magic 'PAR1'", path);
    uint32_t footer_len;
    std::memcpy(&footer_len, d + size - 8, 4);
    if (footer_len > size - 12)
      fail("{}: corrupt Parquet footer: its length {} is out of range (the file has {} bytes, at most {} for the footer)",
           path, footer_len, size, size - 12);
    data_end = size - 8 - footer_len;
    meta = pq::parse_file_metadata(d + data_end, footer_len, path + ": file metadata");
    if (meta.schema.empty()) fail("{}: corrupt Parquet metadata: no schema", path);
    size_t i = 0;
    build(i, -1, "", 0);
    if (i != meta.schema.size())
      fail("{}: corrupt schema: {} elements after the root's children", path, meta.schema.size() - i);
    for (size_t g = 0; g < meta.row_groups.size(); ++g) {
      const pq::RowGroupMeta& rg = meta.row_groups[g];
      if (rg.num_rows < 0) fail("{}: row group {}: negative row count {}", path, g, rg.num_rows);
      if (rg.columns.size() != columns.size())
        fail("{}: row group {} has {} column chunks, the schema has {} columns", path, g, rg.columns.size(),
             columns.size());
      for (size_t c = 0; c < columns.size(); ++c) {
        std::string got;
        for (const auto& part : rg.columns[c].path_in_schema) got += (got.empty() ? "" : ".") + part;
        if (got != columns[c].path)
          fail("{}: row group {}: column chunk {} is '{}', the schema expects '{}'", path, g, c, got, columns[c].path);
      }
    }
    rows.resize(columns.size());
    cursor.resize(columns.size());
  }

  // ---- row groups ----

  // Opens the next row group; false when none is left.
  bool open_next_group() {
    readers.clear();
    if (next_group >= meta.row_groups.size()) return false;
    open_group_index = static_cast<int64_t>(next_group);
    const pq::RowGroupMeta& rg = meta.row_groups[next_group++];
    for (size_t c = 0; c < columns.size(); ++c)
      readers.push_back(std::make_unique<pq::ColumnChunkReader>(file.data(), data_end, path, columns[c], rg.columns[c]));
    group_rows_left = rg.num_rows;
    return true;
  }

  // ---- assembling a row (Dremel record assembly, into JSON) ----

  int16_t def_at(int leaf) const {
    auto l = static_cast<size_t>(leaf);
    if (cursor[l] >= rows[l].def.size()) corrupt_column(leaf, "fewer levels in a row than its structure needs");
    return rows[l].def[cursor[l]];
  }

  // An absent value (null, or an empty list) has exactly one triplet in each of its leaves.
  void skip_one(const Node& n) {
    for (int l = n.first_leaf; l < n.leaf_end; ++l) {
      def_at(l);
      ++cursor[static_cast<size_t>(l)];
    }
  }

  void emit(int id, std::string& out) {
    const Node& n = nodes[static_cast<size_t>(id)];
    if (n.repetition == pq::Repetition::repeated) return emit_repeated(id, id, out);  // a bare repeated field
    if (n.repetition == pq::Repetition::optional && def_at(n.first_leaf) < n.def_level) {
      skip_one(n);
      out += "null";
      return;
    }
    emit_defined(id, out);
  }

  void emit_defined(int id, std::string& out) {
    const Node& n = nodes[static_cast<size_t>(id)];
    switch (n.shape) {
      case Node::Shape::leaf: {
        auto l = static_cast<size_t>(n.leaf);
        int16_t d = def_at(n.leaf);
        if (d != columns[l].max_def)
          corrupt_column(n.leaf, fmt::format("definition level {} where a value (level {}) is required", d,
                                             columns[l].max_def));
        const pq::ColumnRow& r = rows[l];
        size_t k = cursor[l]++;
        size_t begin = k == 0 ? 0 : r.end[k - 1];
        out.append(r.text, begin, r.end[k] - begin);
        return;
      }
      case Node::Shape::list: return emit_repeated(n.repeated, n.element, out);
      case Node::Shape::map: return emit_map(n.repeated, out);
      case Node::Shape::object:
        out.push_back('{');
        for (size_t c = 0; c < n.children.size(); ++c) {
          if (c) out.push_back(',');
          const Node& child = nodes[static_cast<size_t>(n.children[c])];
          out += child.key_json;
          emit(n.children[c], out);
        }
        out.push_back('}');
        return;
    }
  }

  // True when the repeated node `r` has another entry in the current row (its first leaf continues at its level).
  bool continues(const Node& r) const {
    auto l = static_cast<size_t>(r.first_leaf);
    return cursor[l] < rows[l].rep.size() && rows[l].rep[cursor[l]] == r.rep_level;
  }

  void emit_repeated(int repeated, int element, std::string& out) {
    const Node& r = nodes[static_cast<size_t>(repeated)];
    if (def_at(r.first_leaf) < r.def_level) {  // empty (or the enclosing list is null, handled by the caller)
      skip_one(r);
      out += "[]";
      return;
    }
    out.push_back('[');
    for (bool first = true; first || continues(r); first = false) {
      if (!first) out.push_back(',');
      if (element == repeated) emit_defined(element, out);
      else emit(element, out);
    }
    out.push_back(']');
  }

  void emit_map(int repeated, std::string& out) {
    const Node& kv = nodes[static_cast<size_t>(repeated)];
    if (def_at(kv.first_leaf) < kv.def_level) {
      skip_one(kv);
      out += "{}";
      return;
    }
    out.push_back('{');
    std::string key;
    for (bool first = true; first || continues(kv); first = false) {
      if (!first) out.push_back(',');
      key.clear();
      emit(kv.children[0], key);
      if (!key.empty() && key[0] == '"') out += key;
      else append_json_string(out, key);  // numbers and the like become string keys
      out.push_back(':');
      emit(kv.children[1], out);
    }
    out.push_back('}');
  }

  bool next(std::string_view& json, RecordLocation& loc) {
    while (group_rows_left == 0) {
      if (!open_next_group()) return false;
    }
    for (size_t c = 0; c < columns.size(); ++c) {
      if (!readers[c]->read_row(rows[c]))
        corrupt_column(static_cast<int>(c), fmt::format("the column chunk ends before its row group's {} rows",
                                                        meta.row_groups[static_cast<size_t>(open_group_index)].num_rows));
      cursor[c] = 0;
    }
    record.clear();
    emit_defined(0, record);
    for (size_t c = 0; c < columns.size(); ++c)
      if (cursor[c] != rows[c].def.size())
        corrupt_column(static_cast<int>(c), "the row's repetition / definition levels do not match the schema");
    --group_rows_left;
    loc = RecordLocation{};
    loc.file = path;
    loc.index = index++;
    loc.row_group = open_group_index;
    json = record;
    return true;
  }

  int64_t skip(int64_t n) {
    int64_t done = 0;
    while (done < n) {
      if (group_rows_left == 0) {
        if (next_group >= meta.row_groups.size()) break;
        int64_t rows_in_group = meta.row_groups[next_group].num_rows;
        if (rows_in_group <= n - done) {  // a whole row group: not even opened
          ++next_group;
          done += rows_in_group;
          index += rows_in_group;
          continue;
        }
        open_next_group();
        continue;
      }
      int64_t take = std::min(group_rows_left, n - done);
      for (size_t c = 0; c < columns.size(); ++c)
        for (int64_t k = 0; k < take; ++k)
          if (!readers[c]->skip_row()) corrupt_column(static_cast<int>(c), "the column chunk ends before its row group");
      group_rows_left -= take;
      done += take;
      index += take;
    }
    return done;
  }
};

ParquetReader::ParquetReader(std::string path) : impl_(std::make_unique<Impl>()) { impl_->open(std::move(path)); }
ParquetReader::~ParquetReader() = default;

bool ParquetReader::next(std::string_view& json, RecordLocation& loc) { return impl_->next(json, loc); }
int64_t ParquetReader::skip(int64_t n) { return impl_->skip(n); }

int64_t ParquetReader::known_record_count() const {
  int64_t n = 0;
  for (const auto& g : impl_->meta.row_groups) n += g.num_rows;
  return n;
}

const std::string& ParquetReader::path() const { return impl_->path; }

std::vector<std::string> ParquetReader::column_names() const {
  std::vector<std::string> names;
  for (int c : impl_->nodes[0].children) names.push_back(impl_->nodes[static_cast<size_t>(c)].name);
  return names;
}

int64_t ParquetReader::row_group_count() const { return static_cast<int64_t>(impl_->meta.row_groups.size()); }

}  // namespace cotune::data
