--- tide.chat: chat templates for instruct models, as named built-ins.
-- Layer: Lua package. A model's template (GGUF `tokenizer.chat_template`,
-- or `chat_template` in its YAML manifest, which wins) is Jinja text; tide
-- does not run Jinja. It recognises the common templates by their
-- distinctive markers and renders them with built-in Lua code, as
-- llama.cpp's llama_chat_apply_template does:
--
-- | name      | detected by                                   |
-- | chatml    | `<|im_start|>` (ChatML, Qwen, Qwen2)          |
-- | llama3    | `<|start_header_id|>`                         |
-- | gemma     | `<start_of_turn>`                             |
-- | phi3      | `<|user|>` and `<|end|>`                      |
-- | llama2    | `[INST]` and `<<SYS>>`                        |
-- | mistral   | `[INST]` without `<<SYS>>` (the v3 layout)    |
-- | plain     | (a model without any template) "User: ... Assistant:" |
--
--   local chat = require "tide.chat"
--   local text = chat.apply(model, { { role = "system", content = "Be brief." },
--                                    { role = "user", content = "Hi" } })
--   session:feed(model:tokenize(text, { special = true }))
--
-- Rendered text never includes the leading BOS: the tokenizer adds it per
-- the model's add_bos. Tokenize with `special = true` so markers such as
-- `<|im_start|>` become their special tokens (chat.tokenize does both).
-- Roles: system, user, assistant. add_generation_prompt (default true)
-- ends the text with the assistant's turn header, ready to generate.
local M = {}

-- Markers, checked in this order (the first that fits names the template).
local DETECT = {
  { name = "chatml", all = { "<|im_start|>" } },
  { name = "llama3", all = { "<|start_header_id|>" } },
  { name = "gemma", all = { "<start_of_turn>" } },
  { name = "phi3", all = { "<|user|>", "<|end|>" } },
  { name = "llama2", all = { "[INST]", "<<SYS>>" } },
  { name = "mistral", all = { "[INST]" } },
}

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- Each renderer: (messages, add_generation_prompt) -> text.
local RENDER = {}

function RENDER.chatml(msgs, add_gen)
  local out = {}
  for _, m in ipairs(msgs) do
    out[#out + 1] = "<|im_start|>" .. m.role .. "\n" .. m.content .. "<|im_end|>\n"
  end
  if add_gen then out[#out + 1] = "<|im_start|>assistant\n" end
  return table.concat(out)
end

function RENDER.llama3(msgs, add_gen)
  local out = {}
  for _, m in ipairs(msgs) do
    out[#out + 1] = "<|start_header_id|>" .. m.role .. "<|end_header_id|>\n\n" .. trim(m.content) .. "<|eot_id|>"
  end
  if add_gen then out[#out + 1] = "<|start_header_id|>assistant<|end_header_id|>\n\n" end
  return table.concat(out)
end

-- Gemma has no system role: the system text opens the first user turn.
function RENDER.gemma(msgs, add_gen)
  local out, sys = {}, nil
  for _, m in ipairs(msgs) do
    if m.role == "system" then
      sys = (sys and sys .. "\n\n" or "") .. trim(m.content)
    else
      local content = trim(m.content)
      if sys and m.role == "user" then content, sys = sys .. "\n\n" .. content, nil end
      local role = m.role == "assistant" and "model" or m.role
      out[#out + 1] = "<start_of_turn>" .. role .. "\n" .. content .. "<end_of_turn>\n"
    end
  end
  if add_gen then out[#out + 1] = "<start_of_turn>model\n" end
  return table.concat(out)
end

function RENDER.phi3(msgs, add_gen)
  local out = {}
  for _, m in ipairs(msgs) do
    out[#out + 1] = "<|" .. m.role .. "|>\n" .. m.content .. "<|end|>\n"
  end
  if add_gen then out[#out + 1] = "<|assistant|>\n" end
  return table.concat(out)
end

-- Llama 2: the system block sits inside the first [INST]; every later
-- turn starts with <s> (the official template's bos_token + '[INST]').
function RENDER.llama2(msgs)
  local out, open = { "[INST] " }, true
  for _, m in ipairs(msgs) do
    local content = trim(m.content)
    if not open then out[#out + 1] = "<s>[INST] "; open = true end
    if m.role == "system" then
      out[#out + 1] = "<<SYS>>\n" .. content .. "\n<</SYS>>\n\n"
    elseif m.role == "user" then
      out[#out + 1] = content .. " [/INST]"
    else
      out[#out + 1] = " " .. content .. " </s>"
      open = false
    end
  end
  return table.concat(out)
end

-- Mistral (v3 layout): [INST] system\n\nuser[/INST] assistant</s>
function RENDER.mistral(msgs)
  local out, open = {}, false
  for _, m in ipairs(msgs) do
    if not open then out[#out + 1] = "[INST] "; open = true end
    if m.role == "system" then
      out[#out + 1] = m.content .. "\n\n"
    elseif m.role == "user" then
      out[#out + 1] = m.content .. "[/INST]"
    else
      out[#out + 1] = " " .. trim(m.content) .. "</s>"
      open = false
    end
  end
  return table.concat(out)
end

--- The fallback for models without a template:
--   system text, a blank line, then "User: ...\nAssistant: ...\n" turns and
--   a final "Assistant:" (no space: the model writes it).
function RENDER.plain(msgs, add_gen)
  local out = {}
  for _, m in ipairs(msgs) do
    if m.role == "system" then
      out[#out + 1] = m.content .. "\n\n"
    else
      out[#out + 1] = (m.role == "user" and "User: " or "Assistant: ") .. m.content .. "\n"
    end
  end
  if add_gen then out[#out + 1] = "Assistant:" end
  return table.concat(out)
end

--- Names of the built-in templates.
M.names = { "chatml", "llama3", "gemma", "phi3", "llama2", "mistral", "plain" }

--- detect(template_text) -> name, or nil and a message naming the markers
-- that were looked for.
function M.detect(text)
  if type(text) ~= "string" then error("chat.detect: template text (string) expected, got " .. type(text), 2) end
  for _, d in ipairs(DETECT) do
    local ok = true
    for _, mark in ipairs(d.all) do
      if not text:find(mark, 1, true) then ok = false; break end
    end
    if ok then return d.name end
  end
  local wanted = {}
  for _, d in ipairs(DETECT) do
    wanted[#wanted + 1] = string.format("%s (%s)", table.concat(d.all, " + "), d.name)
  end
  return nil, "unsupported chat template: it contains none of the known markers " .. table.concat(wanted, ", ") ..
              "; pass a built-in name (" .. table.concat(M.names, ", ") .. ") instead"
end

local ROLES = { system = true, user = true, assistant = true }

local function check_messages(msgs)
  if type(msgs) ~= "table" or #msgs == 0 then error("chat: a non-empty list of messages expected", 3) end
  for i, m in ipairs(msgs) do
    if type(m) ~= "table" or type(m.content) ~= "string" then
      error(string.format("chat: message %d: { role =, content = string } expected", i), 3)
    end
    if not ROLES[m.role] then
      error(string.format("chat: message %d: role '%s' is not one of system, user, assistant", i, tostring(m.role)), 3)
    end
  end
end

--- render(name_or_template_text, messages [, { add_generation_prompt = true }])
-- -> text. The first argument is a built-in name or template text to detect.
function M.render(template, msgs, opts)
  check_messages(msgs)
  local add_gen = not (opts and opts.add_generation_prompt == false)
  local name = template
  if not RENDER[name] then
    local err
    name, err = M.detect(template)
    if not name then error(err, 2) end
  end
  return RENDER[name](msgs, add_gen), name
end

--- The template text a model carries: its manifest's chat_template, or the
-- GGUF tokenizer.chat_template; nil if neither.
function M.template_of(model)
  local mf = model.manifest
  if mf and mf.chat_template then return mf.chat_template, "manifest" end
  local t = model:meta("tokenizer.chat_template")
  if type(t) == "string" and t ~= "" then return t, "gguf" end
  return nil
end

--- resolve(model [, mode]) -> built-in name. mode: "auto" (default: the
-- model's template, else plain), "template" (the model's template, an
-- error if it has none), or a built-in name. Raises a clear error when a needed template is
-- missing or not recognised.
function M.resolve(model, mode)
  mode = mode or "auto"
  if RENDER[mode] then return mode end
  if mode ~= "auto" and mode ~= "template" then
    error(string.format("chat: unknown template mode '%s' (expected auto, template or one of: %s)",
                        tostring(mode), table.concat(M.names, ", ")), 2)
  end
  local text = M.template_of(model)
  if not text then
    if mode == "template" then
      error("chat: the model has no chat template (no tokenizer.chat_template in the GGUF, no chat_template " ..
            "in its manifest); pass a built-in name or 'auto' for the plain User:/Assistant: layout", 2)
    end
    return "plain"
  end
  local name, err = M.detect(text)
  if not name then error(err, 2) end
  return name
end

--- apply(model, messages [, { template = mode, add_generation_prompt = true }])
-- -> text, template name. mode as for resolve.
function M.apply(model, msgs, opts)
  opts = opts or {}
  local name = M.resolve(model, opts.template)
  return M.render(name, msgs, opts)
end

--- tokenize(model, text) -> ids of rendered chat text (BOS per the model,
-- special-token texts parsed).
function M.tokenize(model, text)
  return model:tokenize(text, { special = true })
end

return M
