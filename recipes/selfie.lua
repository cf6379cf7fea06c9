--- selfie.lua -- SelfIE (Chen et al. 2024): the model describes one of its
-- own hidden states. The hidden state of one token of --text is captured
-- at each layer of --layers and injected over the placeholder tokens of an
-- interpretation prompt at the same layer (tide.selfie, built on
-- tide_ctx_inject); the model then generates. Each generated token gets a
-- relevancy score: its probability with the injection minus without it
-- (the same prompt with the plain placeholder), so tokens that come from
-- the injected state stand out from what the prompt alone would say.
-- Usage: tide recipes/selfie.lua [--text T] [--position N] [--layers 1,3,5] ... (--help)
local tide = require "tide"
local recipe = require "tide.recipe"

local R = {}

R.spec = {
  name = "selfie",
  summary = "SelfIE: inject the hidden state of one token of --text into an interpretation prompt at each " ..
            "layer and let the model describe it, with per-token relevancy (P with - P without injection).",
  options = {
    { "text", "string", "And the king of Israel went up to Jerusalem", "the text whose hidden state is read" },
    { "position", "int", nil, "the token (1-based, with BOS) whose state is read; default the last" },
    { "layers", "string", nil, "comma-separated layers (0 = embeddings, l = after block l-1); default all " ..
                                "but the last" },
    { "prompt", "string", tide.selfie.default_prompt, "interpretation prompt; {} marks the placeholders" },
    { "placeholder", "string", "_", "a one-token placeholder text" },
    { "repeats", "int", 1, "placeholder tokens (each gets the state)" },
    { "max_tokens", "int", 12, "tokens generated per layer" },
    { "color", "bool", true, "colour tokens by relevancy (green: from the injected state)" },
  },
}

function R.run(model, opts)
  local ids = model:tokenize(opts.text)
  local pos = opts.position or #ids
  if pos < 1 or pos > #ids then error(string.format("--position %d out of range 1..%d", pos, #ids), 0) end
  local layers = {}
  if opts.layers then
    for l in opts.layers:gmatch("[^,]+") do
      local n = math.tointeger(tonumber(l))
      if not n then error("--layers: '" .. l .. "' is not a layer number", 0) end
      layers[#layers + 1] = n
    end
  else
    for l = 0, model.info.n_layer - 1 do layers[#layers + 1] = l end
  end
  local out = { token = model:piece(ids[pos]), position = pos, layers = {} }
  for _, l in ipairs(layers) do
    local h = tide.selfie.capture(model, ids, l, pos)
    local r = tide.selfie.interpret(model, h, { layer = l, prompt = opts.prompt, placeholder = opts.placeholder,
                                                repeats = opts.repeats, max_tokens = opts.max_tokens,
                                                seed = opts.seed })
    local mean = 0
    for _, x in ipairs(r.relevancy) do mean = mean + x end
    out.layers[#out.layers + 1] = { layer = l, text = r.text, pieces = r.pieces, relevancy = r.relevancy,
                                    mean_relevancy = #r.relevancy > 0 and mean / #r.relevancy or 0 }
  end
  return out
end

local function colored(pieces, rel, color)
  local parts = {}
  for i, p in ipairs(pieces) do
    p = recipe.clip(p)
    if color then
      local x = rel[i]
      local code = x > 0.1 and "1;32" or x > 0.02 and "32" or x < -0.1 and "1;31" or x < -0.02 and "31" or "0"
      parts[i] = "\27[" .. code .. "m" .. p .. "\27[0m"
    else
      parts[i] = p
    end
  end
  return table.concat(parts)
end

function R.show(res, opts)
  print(string.format("token %d %q of: %s", res.position, res.token, opts.text))
  print(string.format("prompt: %s", opts.prompt))
  local rows = {}
  for _, L in ipairs(res.layers) do
    local best, bi = -math.huge, 0
    for i, x in ipairs(L.relevancy) do if x > best then best, bi = x, i end end
    rows[#rows + 1] = { L.layer, recipe.num(L.mean_relevancy), bi > 0 and recipe.clip(L.pieces[bi]) or "",
                        recipe.clip(L.text, 60) }
  end
  recipe.table({ "layer", "mean rel", "most relevant", "interpretation" }, rows)
  print("")
  for _, L in ipairs(res.layers) do
    io.write(string.format("%5d  %s\n", L.layer, colored(L.pieces, L.relevancy, opts.color)))
  end
end

return recipe.main(R, ...)
