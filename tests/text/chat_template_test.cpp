// Chat templates against transformers' apply_chat_template (goldens from tools/make_chat_template_golden.py):
// DeepSeek-R1-Distill-Qwen, Qwen2.5, Qwen3, Llama 3.2, Mistral Nemo and SmolLM2 over a corpus with unicode, empty,
// very long, multi-turn and system messages: byte-identical text, identical token ids (DeepSeek tokenizer), the
// same errors where the template raises. Plus the Jinja features one by one against jinja2's known output.
#include "text/chat_template.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "common/test_paths.h"
#include "text/jinja.h"
#include "text/tokenizer.h"

namespace cotune::text {
namespace {

std::string render(std::string_view src, const std::string& ctx_json = "{}") {
  auto t = jinja::Template::parse(src);
  return t.render(jinja::Value::from_json(ctx_json)).text;
}

std::string error_of(auto&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// ---- goldens --------------------------------------------------------------------------------------------------

TEST(ChatTemplateGolden, MatchesTransformers) {
  COTUNE_REQUIRE_FIXTURES(fixtures);
  const std::string gold = testing::golden_dir() + "/chat_template";
  std::ifstream in(gold + "/cases.jsonl");
  ASSERT_TRUE(in) << gold << "/cases.jsonl";
  const std::string deepseek_dir = fixtures + "/deepseek-r1-distill-qwen-1.5b";
  const Tokenizer tok = Tokenizer::load(deepseek_dir);
  std::map<std::string, ChatTemplate> templates;
  templates.emplace("deepseek-r1-distill-qwen", ChatTemplate::from_tokenizer_config(deepseek_dir));
  for (const char* name : {"qwen2.5", "qwen3", "llama-3.2", "mistral-nemo-instruct-2407", "smollm2"})
    templates.emplace(name, ChatTemplate::from_tokenizer_config(gold + "/" + name));
  std::map<std::string, int> checked;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    const auto c = nlohmann::ordered_json::parse(line);
    const std::string tname = c["template"];
    auto it = templates.find(tname);
    if (it == templates.end()) continue;  // the training template is checked with the data masks
    ++n;
    const std::string label = tname + "/" + c["conversation"].get<std::string>() +
                              (c["add_generation_prompt"].get<bool>() ? "+gen" : "") + " " + c["variables"].dump();
    ChatRenderOptions o;
    o.add_generation_prompt = c["add_generation_prompt"];
    o.extra_variables_json = c["variables"].dump();
    if (c.contains("error")) {
      const std::string err = error_of([&] { it->second.render_json(c["messages"].dump(), o); });
      EXPECT_NE(err.find(c["error"].get<std::string>()), std::string::npos) << label << ": " << err;
      ++checked[tname];
      continue;
    }
    const jinja::RenderResult r = it->second.render_json(c["messages"].dump(), o);
    ASSERT_EQ(r.text, c["text"].get<std::string>()) << label;
    if (c.contains("ids")) {
      EXPECT_EQ(tok.encode(r.text, false), c["ids"].get<std::vector<int32_t>>()) << label;
    }
    ++checked[tname];
  }
  EXPECT_GT(n, 150);
  for (const auto& [name, _] : templates) EXPECT_GE(checked[name], 20) << name;
}

TEST(ChatTemplate, PlainMessagesAndSpecialTokens) {
  COTUNE_REQUIRE_FIXTURES(fixtures);
  const auto t = ChatTemplate::from_tokenizer_config(fixtures + "/deepseek-r1-distill-qwen-1.5b");
  EXPECT_EQ(t.bos_token(), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(t.eos_token(), "<｜end▁of▁sentence｜>");
  EXPECT_FALSE(t.has_generation_blocks());
  EXPECT_EQ(t.render({{"user", "Hi"}}, true), "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n");
  EXPECT_EQ(t.render({{"system", "S"}, {"user", "Q"}, {"assistant", "<think>\nr\n</think>\n\nA"}}, false),
            "<｜begin▁of▁sentence｜>S<｜User｜>Q<｜Assistant｜>\n\nA<｜end▁of▁sentence｜>");
}

TEST(ChatTemplate, FindsChatTemplateJinjaAndListForm) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("cotune_chat_tpl_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream(dir / "tokenizer_config.json")
        << R"({"eos_token": {"content": "</s>"}, "chat_template": [{"name": "tool_use", "template": "T"},
              {"name": "default", "template": "{{ eos_token }}{{ messages|length }}"}]})";
  }
  EXPECT_EQ(ChatTemplate::from_tokenizer_config(dir.string()).render({{"user", "a"}}, false), "</s>1");
  { std::ofstream(dir / "chat_template.jinja") << "J{{ messages[0].content }}\n"; }
  EXPECT_EQ(ChatTemplate::from_tokenizer_config(dir.string()).render({{"user", "a"}}, false), "Ja");
  fs::remove(dir / "chat_template.jinja");
  { std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": "</s>"})"; }
  EXPECT_FALSE(ChatTemplate::find(dir.string()).has_value());
  EXPECT_NE(error_of([&] { ChatTemplate::from_tokenizer_config(dir.string()); }).find("no chat template"),
            std::string::npos);
  fs::remove_all(dir);
}

// ---- the Jinja subset, feature by feature (expected strings are jinja2 3.1's output) -----------------------------

TEST(Jinja, WhitespaceControlAsTransformers) {
  // trim_blocks + lstrip_blocks, the trailing newline dropped
  EXPECT_EQ(render("{% if true %}\n  a\n  {% endif %}\nb\n"), "  a\nb");
  EXPECT_EQ(render("x  {%- if true -%}  y  {%- endif -%}  z"), "xyz");
  EXPECT_EQ(render("a\n    {{ 'v' }}\n"), "a\n    v");
  EXPECT_EQ(render("a  {%+ if true %}b{% endif %}"), "a  b");
  EXPECT_EQ(render("{# c #}\nx{#- c -#}  y"), "xy");
  EXPECT_EQ(render("{% raw %}{{ not evaluated }}{% endraw %}"), "{{ not evaluated }}");
  EXPECT_EQ(render("a\r\nb\r\n"), "a\nb");
}

TEST(Jinja, Expressions) {
  EXPECT_EQ(render("{{ 1 + 2 * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1.0 }}"),
            "7 3 -4 2 3.5 1024 1.0");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ none }} {{ 'ab' * 3 }} {{ [1] + [2] }} {{ true }} {{ none }}"),
            "a1None ababab [1, 2] True None");
  EXPECT_EQ(render("{{ 'x' if false }}|{{ 'y' if 1 > 2 else 'z' }}|{{ 1 < 2 < 3 }}|{{ not 1 == 1 or 2 }}"),
            "|z|True|2");
  EXPECT_EQ(render("{{ 'b' in 'abc' }} {{ 3 not in [1, 2] }} {{ 'k' in {'k': 1} }}"), "True True True");
  EXPECT_EQ(render("{{ s[1:] }} {{ s[::-1] }} {{ s[-1] }} {{ s|length }} {{ l[-2:] }}",
                   R"({"s": "héllo🌍", "l": [1, 2, 3]})"),
            "éllo🌍 🌍olléh 🌍 6 [2, 3]");
  EXPECT_EQ(render("{{ d.a }} {{ d['b'].c }} {{ d.missing }}|{{ d.items()|list }} {{ d.get('x', 5) }}",
                   R"({"d": {"a": 1, "b": {"c": "C"}}})"),
            "1 C |[('a', 1), ('b', {'c': 'C'})] 5");
  EXPECT_EQ(render("{{ \"it's\" }} {{ 'a\\nb' }} {{ '\\u00e9' }} {{ 'x' 'y' }}"), "it's a\nb é xy");
  EXPECT_EQ(render("{{ {'a': [1, 'x', none, true, 1.5]}|tojson }} {{ 'ü\"'|tojson }}"),
            "{\"a\": [1, \"x\", null, true, 1.5]} \"ü\\\"\"");
  EXPECT_EQ(render("{{ {'a': 1, 'b': [2]}|tojson(indent=2) }}"), "{\n  \"a\": 1,\n  \"b\": [\n    2\n  ]\n}");
  // A template that is not UTF-8 is refused, naming the line (a fuzzing find: a sequence cut at a string's end made
  // `trim` read past it under ASan).
  EXPECT_NE(error_of([] { render("ok\n{{ 'ab\xC3' | trim }}"); }).find("line 2: the template is not valid UTF-8"),
            std::string::npos);
  // Float literals out of double's range are inf / 0.0, as Python's float() (a fuzzing find: stod threw).
  EXPECT_EQ(render("{{ 1e999 }} {{ -1e999 }} {{ 1e-999 }} {{ 9999999999e99999 > 1 }}"), "inf -inf 0.0 True");
  // An attribute path whose numeric part is past int64 is an index out of range: undefined, as in jinja2 (a fuzzing
  // find on the H200: std::stoll threw out of map(attribute=...)).
  EXPECT_EQ(render("{{ m|map(attribute='99999999999999999999999')|list }}", R"({"m": [[1, 2]]})"),
            render("{{ m|map(attribute='5')|list }}", R"({"m": [[1, 2]]})"));
  // Runaway strings are refused, naming the operation (a fuzzing find: 'x' * 1907129166 took the memory).
  EXPECT_NE(error_of([] { render("{{ 'abc' * 1907129166 }}"); }).find("'*' would repeat a string of 3 bytes"),
            std::string::npos);
  EXPECT_NE(error_of([] { render("{{ [1, 2] * 900000000 }}"); }).find("'*' would repeat a list of 2 items"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              render("{% set ns = namespace(s='abcdefgh') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
                     "{% endfor %}");
            }).find("'~' would make a string of"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              render("{% set s = 'a' * 1000000 %}{% for i in range(100) %}{{ s }}{% endfor %}");
            }).find("the rendered text would make a string of"),
            std::string::npos);
  EXPECT_NE(error_of([] { render("{{ ('a' * 1000000)|replace('a', 'x' * 100) }}"); }).find("replace would make"),
            std::string::npos);
  EXPECT_EQ(render("{{ 'ab' * 3 }} {{ [1] * 2 }} {{ 'ab' * -1 }}|"), "ababab [1, 1] |");
  // Repeating nothing many times is immediate (a fuzz find: [] * 113205555555 looped 1.1e11 times).
  EXPECT_EQ(render("{{ '' * 113205555555 }}|{{ [] * 113205555555 }}|{{ (0 * m) * 9223372036854775807 }}",
                   R"({"m": [1, 2]})"),
            "|[]|[]");
  // int of a float past int64 takes the default (a cast would be undefined behaviour); %d of one is an error.
  EXPECT_EQ(render("{{ 1e300|int }} {{ '1e300'|int(7) }} {{ 2.9|int }} {{ '-3.5'|int }}"), "0 7 2 -3");
  EXPECT_NE(error_of([] { render("{{ '%d'|format(1e300) }}"); }).find("has no 64-bit integer value"), std::string::npos);
  // 64-bit integer arithmetic never wraps or loops (a fuzzing find: 11 ** 121 ** 12 overflowed, UBSan): an overflow is
  // an error naming the operation; powers by squaring; range and slices stop before their index would overflow.
  EXPECT_NE(error_of([] { render("{{ 11 ** 121 ** 12 }}"); }).find("integer overflow: 11 ** "), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ 9223372036854775807 + 1 }}"); }).find("integer overflow"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ -9223372036854775807 - 2 }}"); }).find("integer overflow"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ 4294967296 * 4294967296 }}"); }).find("integer overflow"), std::string::npos);
  EXPECT_EQ(render("{{ 2 ** 62 }} {{ (-2) ** 63 }} {{ 1 ** 999999999999999999 }} {{ (-1) ** 999999999999999999 }} "
                   "{{ 0 ** 999999999999999999 }} {{ 3 ** 0 }} {{ 2 ** -1 }}"),
            "4611686018427387904 -9223372036854775808 1 -1 0 1 0.5");
  EXPECT_NE(error_of([] { render("{{ 2 ** 63 }}"); }).find("integer overflow"), std::string::npos);
  EXPECT_EQ(render("{{ range(9223372036854775806, 9223372036854775807, 10)|list }} "
                   "{{ [1, 2, 3][1::9223372036854775807] }} {{ 7 // -1 }} {{ -7 % 3 }}"),
            "[9223372036854775806] [2] -7 2");
}

TEST(Jinja, TestsAndFilters) {
  EXPECT_EQ(render("{{ x is defined }} {{ y is defined }} {{ n is none }} {{ s is string }} {{ 3 is number }} "
                   "{{ l is iterable }} {{ d is mapping }} {{ 4 is divisibleby 2 }} {{ 3 is odd }} {{ s is not none }}",
                   R"({"x": 1, "n": null, "s": "t", "l": [], "d": {}})"),
            "True False True True True True True True True True");
  EXPECT_EQ(render("{{ '  a b  '|trim }}|{{ 'Ab'|upper }}{{ 'Ab'|lower }}|{{ 'aXa'|replace('a', 'b') }}|"
                   "{{ [1, 2]|join(', ') }}|{{ u|default('d') }}|{{ ''|default('e', true) }}|{{ [3, 4]|first }}"
                   "{{ [3, 4]|last }}|{{ 'hello world'|title }}|{{ 'abc'|capitalize }}|{{ [3, 1, 2]|sort|list }}"),
            "a b|ABab|bXb|1, 2|d|e|34|Hello World|Abc|[1, 2, 3]");
  const std::string msgs = R"({"m": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
                               {"role": "assistant", "content": "A"}]})";
  EXPECT_EQ(render("{{ m|selectattr('role', 'equalto', 'user')|map(attribute='content')|join }}"
                   "{{ m|rejectattr('role', 'in', ['user', 'system'])|map(attribute='content')|list }}"
                   "{{ m|map(attribute='role')|select('ne', 'system')|list|length }}",
                   msgs),
            "U['A']2");
  EXPECT_EQ(render("{{ ' x '.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|"
                   "{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}|{{ 'a</think>b'.split('</think>')[-1] }}"
                   "|{{ 'Hello'.upper() }}|{{ 'a-b-c'.rsplit('-', 1) }}|{{ 'abcb'.find('b') }}"),
            "x|axx|['a', 'b', '', 'c']|['a', 'b']|TrueTrue|b|HELLO|['a-b', 'c']|1");
  EXPECT_EQ(render("{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}|{{ d|dictsort }}",
                   R"({"d": {"b": 1, "a": 2}})"),
            "b=1;a=2;|[('a', 2), ('b', 1)]");
  EXPECT_EQ(render("{% filter upper %}abc{% endfilter %}"), "ABC");
  EXPECT_EQ(render("{{ 'a\nb'|indent(2, true) }}"), "  a\n  b");
}

TEST(Jinja, StatementsAndScoping) {
  EXPECT_EQ(render("{% for x in l %}{{ loop.index0 }}{{ loop.index }}{{ loop.first }}{{ loop.last }}{{ loop.length }}"
                   "{{ loop.revindex }};{% else %}empty{% endfor %}",
                   R"({"l": ["a", "b"]})"),
            "01TrueFalse22;12FalseTrue21;");
  EXPECT_EQ(render("{% for x in [] %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{{ loop.index }}{% endfor %}"), "2142");
  EXPECT_EQ(render("{% for x in [1, 2, 3, 4] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}"
                   "{% endif %}{{ x }}{% endfor %}"),
            "13");
  // set in a loop does not leak; a namespace does
  EXPECT_EQ(render("{% set c = 0 %}{% set ns = namespace(c=0) %}{% for x in [1, 2] %}{% set c = c + x %}"
                   "{% set ns.c = ns.c + x %}{% endfor %}{{ c }} {{ ns.c }}"),
            "0 3");
  // set in an if does
  EXPECT_EQ(render("{% if true %}{% set y = 5 %}{% endif %}{{ y }}"), "5");
  EXPECT_EQ(render("{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set t %}block {{ a }}{% endset %}[{{ t }}]"), "12[block 1]");
  EXPECT_EQ(render("{% macro m(x, y='d') %}<{{ x }}{{ y }}>{% endmacro %}{{ m(1) }}{{ m(2, y='e') }}{{ m('a', 'b') }}"),
            "<1d><2e><ab>");
  EXPECT_EQ(render("{% macro w() %}[{{ caller() }}]{% endmacro %}{% call w() %}in{% endcall %}"), "[in]");
  EXPECT_EQ(render("{% for a in [1, 2] %}{% for b in [3] %}{{ loop.depth }}{{ a }}{{ b }}{% endfor %}{% endfor %}"),
            "113123");
  EXPECT_EQ(render("{% for i in range(3) %}{{ i }}{% endfor %}{{ range(1, 7, 2)|list }}"), "012[1, 3, 5]");
  EXPECT_EQ(render("{{ x.y is defined }}", R"({"x": {}})"), "False");
}

TEST(Jinja, GenerationBlocksGiveSpans) {
  auto t = jinja::Template::parse("a{% generation %}BC{% endgeneration %}d{% generation %}É{% endgeneration %}");
  EXPECT_TRUE(t.has_generation_blocks());
  auto r = t.render(jinja::Value::dict());
  EXPECT_EQ(r.text, "aBCdÉ");
  ASSERT_EQ(r.generation_spans.size(), 2u);
  EXPECT_EQ(r.generation_spans[0], (std::pair<size_t, size_t>{1, 3}));
  EXPECT_EQ(r.generation_spans[1], (std::pair<size_t, size_t>{4, 6}));  // bytes
}

TEST(Jinja, ErrorsNameTheLine) {
  EXPECT_NE(error_of([] { render("a\n{{ raise_exception('bad roles') }}"); }).find("line 2: raise_exception: bad roles"),
            std::string::npos);
  EXPECT_NE(error_of([] { render("{% if x %}"); }).find("expected 'endif'"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ 'a' + 1 }}"); }).find("unsupported operand"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ u.x }}"); }).find("'u' is undefined"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ x|nosuch }}"); }).find("no filter named 'nosuch'"), std::string::npos);
  EXPECT_NE(error_of([] { render("{% set l = [] %}{{ l.append(1) }}"); }).find("unsafe"), std::string::npos);
  EXPECT_NE(error_of([] { render("{% set x = 1 %}{% set x.y = 2 %}"); }).find("non-namespace"), std::string::npos);
  EXPECT_NE(error_of([] { render("{{ 'unterminated }}"); }).find("unterminated string"), std::string::npos);
}

}  // namespace
}  // namespace cotune::text
