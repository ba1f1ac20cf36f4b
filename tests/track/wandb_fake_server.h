// A loopback W&B server for the tests: the GraphQL operations and the file_stream / upload endpoints the
// official client uses (src/track/wandb_api.h), with the server's semantics where they matter (file_stream
// offsets replace lines, so a retried POST does not duplicate them) and checks of every request's shape:
// HTTP basic auth "api:<key>" (else 401), GraphQL bodies {"query": str, "variables": obj}, UpsertBucket's
// config a JSON string of {"key": {"value": v}}, file_stream lines at offsets without gaps, history rows
// JSON objects with an integer _step. Violations are collected in problems().
//
// Faults for the tests: the next N file_stream requests answer 500, hang past the client's timeout, or
// drop the connection after the server applied them; stop() / start() take the server away and back on
// the same port.
#pragma once
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace cotune::track::testing {

struct FakeRun {
  std::string entity, project, name, display_name, notes;
  std::vector<std::string> tags;
  nlohmann::json config = nlohmann::json::object();  // key -> value (the {"value": v} unwrapped)
  std::map<std::string, std::vector<std::string>> lines;  // file_stream files: wandb-history.jsonl, ...
  std::map<std::string, std::string> uploads;             // run files PUT to their upload URL
  std::vector<std::string> uploaded;                      // the final request's "uploaded"
  bool complete = false;
  int exitcode = -1;
  int upserts = 0;
};

class FakeWandbServer {
 public:
  explicit FakeWandbServer(std::string api_key) : key_(std::move(api_key)) {
    port_ = 0;
    start();
  }
  ~FakeWandbServer() { stop(); }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int port() const { return port_; }

  void start() {
    server_ = std::make_unique<httplib::Server>();
    routes(*server_);
    if (port_ == 0) {
      port_ = server_->bind_to_any_port("127.0.0.1");
    } else {
      for (int i = 0; i < 100 && !server_->bind_to_port("127.0.0.1", port_); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    for (int i = 0; i < 200 && !server_->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  void stop() {
    if (!server_) return;
    server_->stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }

  // Faults on the next file_stream requests.
  std::atomic<int> fail_500{0}, hang{0}, drop{0};
  std::atomic<int> hang_ms{1500};
  std::atomic<int> viewer_status{200};  // e.g. 401 for a key the server rejects

  // An existing run (to resume): its history rows (each a JSON object) and its counts.
  void add_run(const std::string& entity, const std::string& project, const std::string& name,
               const std::vector<nlohmann::json>& history) {
    std::lock_guard<std::mutex> lock(mu_);
    FakeRun& r = runs_[name];
    r.entity = entity;
    r.project = project;
    r.name = name;
    for (const auto& h : history) r.lines["wandb-history.jsonl"].push_back(h.dump());
  }

  std::optional<FakeRun> run(const std::string& name) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = runs_.find(name);
    if (it == runs_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<std::string> run_names() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& kv : runs_) out.push_back(kv.first);
    return out;
  }
  std::vector<std::string> problems() const {
    std::lock_guard<std::mutex> lock(mu_);
    return problems_;
  }
  // Every request body received (to check that the key never travels in one).
  std::vector<std::string> bodies() const {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_;
  }
  int requests(const std::string& what) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = counts_.find(what);
    return it == counts_.end() ? 0 : it->second;
  }

 private:
  using json = nlohmann::json;

  static std::string base64(const std::string& in) {
    static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    int val = 0, bits = -6;
    for (unsigned char c : in) {
      val = (val << 8) + c;
      bits += 8;
      while (bits >= 0) {
        out.push_back(t[(val >> bits) & 0x3F]);
        bits -= 6;
      }
    }
    if (bits > -6) out.push_back(t[((val << 8) >> (bits + 8)) & 0x3F]);
    while (out.size() % 4) out.push_back('=');
    return out;
  }

  void problem(const std::string& p) { problems_.push_back(p); }  // caller holds mu_

  bool authorized(const httplib::Request& req, httplib::Response& res) {
    if (req.get_header_value("Authorization") == "Basic " + base64("api:" + key_)) return true;
    res.status = 401;
    res.set_content(R"({"errors":[{"message":"user is not logged in"}]})", "application/json");
    return false;
  }

  void routes(httplib::Server& s) {
    s.Post("/graphql", [this](const httplib::Request& req, httplib::Response& res) { graphql(req, res); });
    s.Post(R"(/files/([^/]+)/([^/]+)/([^/]+)/file_stream)",
           [this](const httplib::Request& req, httplib::Response& res) { file_stream(req, res); });
    s.Put(R"(/upload/([^/]+)/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      bodies_.push_back(req.body);
      ++counts_["upload"];
      auto it = runs_.find(req.matches[1].str());
      if (it == runs_.end()) {
        res.status = 404;
        return;
      }
      it->second.uploads[req.matches[2].str()] = req.body;
      res.set_content("", "text/plain");
    });
  }

  void graphql(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard<std::mutex> lock(mu_);
    bodies_.push_back(req.body);
    if (!authorized(req, res)) return;
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("query") || !body["query"].is_string() ||
        (body.contains("variables") && !body["variables"].is_object())) {
      problem("graphql: body is not {query, variables}: " + req.body.substr(0, 200));
      res.status = 400;
      return;
    }
    const std::string q = body["query"];
    const json v = body.value("variables", json::object());
    auto reply = [&](json data) { res.set_content(json{{"data", data}}.dump(), "application/json"); };
    if (q.find("query Viewer") != std::string::npos) {
      ++counts_["Viewer"];
      if (viewer_status != 200) {
        res.status = viewer_status;
        return;
      }
      return reply({{"viewer", {{"id", "u1"}, {"entity", "fake-entity"}, {"username", "fake-user"}}}});
    }
    if (q.find("query RunResumeStatus") != std::string::npos) {
      ++counts_["RunResumeStatus"];
      auto it = runs_.find(v.value("name", ""));
      if (it == runs_.end()) return reply({{"model", {{"bucket", nullptr}}}});
      const FakeRun& r = it->second;
      json tail = json::array();
      const auto& h = r.lines.count("wandb-history.jsonl") ? r.lines.at("wandb-history.jsonl") : std::vector<std::string>{};
      for (size_t i = h.size() > 10 ? h.size() - 10 : 0; i < h.size(); ++i) tail.push_back(h[i]);
      auto count = [&](const char* f) { return r.lines.count(f) ? r.lines.at(f).size() : 0; };
      return reply({{"model",
                     {{"bucket",
                       {{"id", "b-" + r.name}, {"name", r.name}, {"historyLineCount", count("wandb-history.jsonl")},
                        {"eventsLineCount", count("wandb-events.jsonl")}, {"logLineCount", count("output.log")},
                        {"historyTail", tail.dump()}, {"summaryMetrics", "{}"}}}}}});
    }
    if (q.find("mutation UpsertBucket") != std::string::npos) {
      ++counts_["UpsertBucket"];
      const std::string name = v.value("name", "");
      if (name.empty()) problem("UpsertBucket without a name");
      FakeRun& r = runs_[name];
      r.name = name;
      r.entity = v["entity"].is_string() ? v["entity"].get<std::string>() : "fake-entity";
      r.project = v.value("project", "uncategorized");
      if (v.contains("displayName") && v["displayName"].is_string()) r.display_name = v["displayName"];
      if (v.contains("notes") && v["notes"].is_string()) r.notes = v["notes"];
      if (v.contains("tags") && v["tags"].is_array()) r.tags = v["tags"].get<std::vector<std::string>>();
      if (v.contains("config") && !v["config"].is_null()) {
        json c = v["config"].is_string() ? json::parse(v["config"].get<std::string>(), nullptr, false) : json();
        if (!c.is_object()) problem("UpsertBucket config is not a JSON string of an object");
        else
          for (const auto& [k, val] : c.items()) {
            if (!val.is_object() || !val.contains("value")) problem("config key " + k + " is not {\"value\": ...}");
            else r.config[k] = val["value"];
          }
      }
      ++r.upserts;
      return reply({{"upsertBucket",
                     {{"bucket",
                       {{"id", "b-" + name}, {"name", name},
                        {"displayName", r.display_name.empty() ? "fake-run-1" : r.display_name},
                        {"project", {{"id", "p1"}, {"name", r.project}, {"entity", {{"id", "e1"}, {"name", r.entity}}}}},
                        {"historyLineCount", r.lines["wandb-history.jsonl"].size()}}},
                      {"inserted", r.upserts == 1}}}});
    }
    if (q.find("mutation CreateRunFiles") != std::string::npos) {
      ++counts_["CreateRunFiles"];
      json files = json::array();
      for (const auto& f : v.value("files", json::array()))
        files.push_back({{"name", f}, {"uploadUrl", url() + "/upload/" + v.value("run", "") + "/" + f.get<std::string>()}});
      return reply({{"createRunFiles", {{"runID", "b1"}, {"uploadHeaders", json::array()}, {"files", files}}}});
    }
    problem("unknown GraphQL operation: " + q.substr(0, 60));
    reply(json::object());
  }

  void file_stream(const httplib::Request& req, httplib::Response& res) {
    if (hang > 0) {
      --hang;
      std::this_thread::sleep_for(std::chrono::milliseconds(hang_ms.load()));
      res.status = 504;
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    bodies_.push_back(req.body);
    ++counts_["file_stream"];
    if (!authorized(req, res)) return;
    if (fail_500 > 0) {
      --fail_500;
      res.status = 500;
      res.set_content("internal error", "text/plain");
      return;
    }
    const std::string name = req.matches[3].str();
    auto it = runs_.find(name);
    if (it == runs_.end()) {
      problem("file_stream for a run that was never upserted: " + name);
      res.status = 404;
      return;
    }
    FakeRun& r = it->second;
    if (r.entity != req.matches[1].str() || r.project != req.matches[2].str())
      problem("file_stream path " + req.path + " does not match the run's entity/project");
    json body = json::parse(req.body, nullptr, false);
    if (!body.is_object() || !body.contains("files") || !body["files"].is_object()) {
      problem("file_stream body without a files object");
      res.status = 400;
      return;
    }
    for (const auto& [file, chunk] : body["files"].items()) {
      if (!chunk.contains("offset") || !chunk["offset"].is_number_integer() || !chunk.contains("content") ||
          !chunk["content"].is_array()) {
        problem("file_stream " + file + ": chunk is not {offset: int, content: [..]}");
        continue;
      }
      auto& lines = r.lines[file];
      size_t off = chunk["offset"].get<size_t>();
      if (file == "wandb-summary.json") {
        lines.clear();
        off = 0;
      }
      if (off > lines.size()) problem("file_stream " + file + ": gap (offset " + std::to_string(off) + " > " +
                                      std::to_string(lines.size()) + " lines)");
      for (const auto& line : chunk["content"]) {
        if (!line.is_string()) {
          problem("file_stream " + file + ": a line is not a string");
          continue;
        }
        if (file == "wandb-history.jsonl") {
          json row = json::parse(line.get<std::string>(), nullptr, false);
          if (!row.is_object() || !row.contains("_step") || !row["_step"].is_number_integer())
            problem("history line without an integer _step: " + line.get<std::string>().substr(0, 100));
        }
        if (off < lines.size()) lines[off] = line;  // a retry: the same offset replaces the line
        else lines.push_back(line);
        ++off;
      }
    }
    if (body.value("complete", false)) {
      r.complete = true;
      r.exitcode = body.value("exitcode", -1);
      if (body.contains("uploaded") && body["uploaded"].is_array())
        r.uploaded = body["uploaded"].get<std::vector<std::string>>();
    }
    if (drop > 0) {  // applied, but the reply is cut: the client must retry without duplicating lines
      --drop;
      res.set_content_provider(64, "application/json",
                               [](size_t, size_t, httplib::DataSink&) { return false; });
      return;
    }
    res.set_content(R"({"exitcode":null,"limits":{}})", "application/json");
  }

  std::string key_;
  int port_ = 0;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::map<std::string, FakeRun> runs_;
  std::vector<std::string> problems_, bodies_;
  std::map<std::string, int> counts_;
};

}  // namespace cotune::track::testing
