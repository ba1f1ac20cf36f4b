#include "track/wandb_api.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <mutex>

#include "base/error.h"

namespace cotune::track::wandb {

// The query texts the client sends (wandb-core 0.31), trimmed to the fields cotune reads.
const char* const kViewerQuery = R"(query Viewer {
	viewer {
		id
		entity
		username
		email
		flags
		teams {
			edges {
				node {
					name
				}
			}
		}
	}
})";

const char* const kRunResumeStatusQuery =
    R"(query RunResumeStatus ($project: String, $entity: String, $name: String!) {
	model(name: $project, entityName: $entity) {
		id
		name
		entity {
			id
			name
		}
		bucket(name: $name, missingOk: true) {
			id
			name
			summaryMetrics
			displayName
			logLineCount
			historyLineCount
			eventsLineCount
			historyTail
			eventsTail
			config
			tags
			notes
		}
	}
})";

const char* const kUpsertBucketMutation =
    R"(mutation UpsertBucket ($id: String, $name: String, $project: String, $entity: String, $groupName: String, $description: String, $displayName: String, $notes: String, $commit: String, $config: JSONString, $host: String, $debug: Boolean, $program: String, $repo: String, $jobType: String, $state: String, $sweep: String, $tags: [String!], $summaryMetrics: JSONString) {
	upsertBucket(input: {id:$id,name:$name,groupName:$groupName,modelName:$project,entityName:$entity,description:$description,displayName:$displayName,notes:$notes,config:$config,commit:$commit,host:$host,debug:$debug,jobProgram:$program,jobRepo:$repo,jobType:$jobType,state:$state,sweep:$sweep,tags:$tags,summaryMetrics:$summaryMetrics}) {
		bucket {
			id
			name
			displayName
			description
			config
			sweepName
			project {
				id
				name
				entity {
					id
					name
				}
			}
			historyLineCount
		}
		inserted
	}
})";

const char* const kCreateRunFilesMutation =
    R"(mutation CreateRunFiles ($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
	createRunFiles(input: {entityName:$entity,projectName:$project,runName:$run,files:$files}) {
		runID
		uploadHeaders
		files {
			name
			uploadUrl
		}
	}
})";

std::string HttpResult::describe() const {
  if (status == 0) return error.empty() ? std::string("no response") : error;
  std::string snippet = body.substr(0, 200);
  for (char& c : snippet)
    if (c == '\n' || c == '\r') c = ' ';
  return snippet.empty() ? fmt::format("HTTP {}", status) : fmt::format("HTTP {}: {}", status, snippet);
}

namespace {

size_t append_body(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

}  // namespace

Api::Api(std::string base_url, std::string api_key, double timeout_s, std::string user_agent)
    : base_url_(std::move(base_url)), api_key_(std::move(api_key)), user_agent_(std::move(user_agent)),
      timeout_s_(timeout_s) {
  global_init_once();
  curl_ = curl_easy_init();
  if (!curl_) fail("wandb: cannot initialise libcurl");
}

Api::~Api() { curl_easy_cleanup(static_cast<CURL*>(curl_)); }

HttpResult Api::request(const char* method, const std::string& url, const std::string& body,
                        const std::vector<std::string>& headers, bool auth) {
  CURL* c = static_cast<CURL*>(curl_);
  curl_easy_reset(c);
  HttpResult r;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // worker threads: no SIGALRM for timeouts
  const long timeout_ms = static_cast<long>(timeout_s_ * 1000);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, std::min(timeout_ms, 10000L));
  curl_easy_setopt(c, CURLOPT_USERAGENT, user_agent_.c_str());
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // gzip replies, as the client accepts
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  // A local server (W&B Server on this machine, a test) is never reached through an HTTP proxy.
  if (url.rfind("http://127.0.0.1", 0) == 0 || url.rfind("http://localhost", 0) == 0)
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  if (auth) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERNAME, "api");
    curl_easy_setopt(c, CURLOPT_PASSWORD, api_key_.c_str());
  }
  curl_slist* list = nullptr;
  for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  list = curl_slist_append(list, "Expect:");  // no 100-continue round trip
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
  const CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(list);
  if (rc != CURLE_OK) {
    r.status = 0;
    r.error = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(rc));
    r.body.clear();
    return r;
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
  return r;
}

HttpResult Api::graphql(std::string_view query, const nlohmann::json& variables) {
  nlohmann::json body = {{"query", query}, {"variables", variables}};
  return request("POST", base_url_ + "/graphql", body.dump(), {"Content-Type: application/json"}, true);
}

HttpResult Api::post_json(const std::string& path, const std::string& body) {
  return request("POST", base_url_ + path, body, {"Content-Type: application/json"}, true);
}

HttpResult Api::put(const std::string& url, const std::string& body, const std::vector<std::string>& headers) {
  // Upload URLs are pre-signed (cloud storage) or the server's own; only the latter wants the key.
  const bool own_server = url.rfind(base_url_, 0) == 0;
  return request("PUT", url, body, headers, own_server);
}

nlohmann::json graphql_data(const HttpResult& r, std::string* errors) {
  auto j = nlohmann::json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    if (errors) *errors = "the reply is not JSON";
    return nullptr;
  }
  if (errors && j.contains("errors") && j["errors"].is_array()) {
    std::string msg;
    for (const auto& e : j["errors"])
      if (e.is_object() && e.contains("message") && e["message"].is_string())
        msg += (msg.empty() ? "" : "; ") + e["message"].get<std::string>();
    *errors = msg;
  }
  if (!j.contains("data") || j["data"].is_null()) return nullptr;
  return j["data"];
}

}  // namespace cotune::track::wandb
