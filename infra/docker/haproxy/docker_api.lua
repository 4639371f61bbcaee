-- The one Docker API call the socket proxy (docker-api.cfg) cannot judge by its path alone:
-- POST /containers/create. Its JSON body is read the way Docker reads it (Go's encoding/json:
-- field names match case-insensitively, escapes are decoded) and checked against an
-- allow-list: what ComposeRunLauncher sends (aps_etl/instance/compose_run_launcher.py) and
-- nothing more. Anything else, or anything this reader cannot read, is refused.
--
--   lua.docker_create_allowed   true or false; on false, txn.refusal says why
--
-- The project (APS_COMPOSE_PROJECT) names the runs' containers, network and CA volume.

local PROJECT = os.getenv("APS_COMPOSE_PROJECT") or "aps-etl"
local NULL = setmetatable({}, { __tostring = function() return "null" end })
local OBJECT, ARRAY = {}, {} -- metatables: what a decoded table was
local MAX_DEPTH = 16

-- Strict JSON (RFC 8259), the body's first and only value. Two keys of one object equal but
-- for case are refused: Go matches a struct's fields case-insensitively and would take the
-- last one (one reading here and another in Docker is what must not happen).
local function decode(text)
  local pos = 1
  local function fail(why) error({ refusal = "unreadable JSON: " .. why }, 0) end
  local function skip() pos = text:find("[^ \t\r\n]", pos) or (#text + 1) end
  local escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" }
  local value

  local function str()
    pos = pos + 1 -- the opening quote
    local out = {}
    while true do
      local c = text:sub(pos, pos)
      if c == "" then fail("unterminated string") end
      if c == '"' then pos = pos + 1; return table.concat(out) end
      if c:byte() < 32 then fail("control character in a string") end
      if c == "\\" then
        local e = text:sub(pos + 1, pos + 1)
        if escapes[e] then
          out[#out + 1] = escapes[e]; pos = pos + 2
        elseif e == "u" then
          local hex = text:sub(pos + 2, pos + 5)
          if not hex:match("^%x%x%x%x$") then fail("bad \\u escape") end
          out[#out + 1] = utf8.char(tonumber(hex, 16)); pos = pos + 6
        else
          fail("bad escape")
        end
      else
        out[#out + 1] = c; pos = pos + 1
      end
    end
  end

  local function object(depth)
    pos = pos + 1
    local out, seen = setmetatable({}, OBJECT), {}
    skip()
    if text:sub(pos, pos) == "}" then pos = pos + 1; return out end
    while true do
      skip()
      if text:sub(pos, pos) ~= '"' then fail("a key expected") end
      local key = str()
      if seen[key:lower()] then fail("key '" .. key .. "' given twice") end
      seen[key:lower()] = true
      skip()
      if text:sub(pos, pos) ~= ":" then fail("':' expected") end
      pos = pos + 1
      out[key] = value(depth + 1)
      skip()
      local c = text:sub(pos, pos)
      pos = pos + 1
      if c == "}" then return out end
      if c ~= "," then fail("',' or '}' expected") end
    end
  end

  local function array(depth)
    pos = pos + 1
    local out = setmetatable({}, ARRAY)
    skip()
    if text:sub(pos, pos) == "]" then pos = pos + 1; return out end
    while true do
      out[#out + 1] = value(depth + 1)
      skip()
      local c = text:sub(pos, pos)
      pos = pos + 1
      if c == "]" then return out end
      if c ~= "," then fail("',' or ']' expected") end
    end
  end

  value = function(depth)
    if depth > MAX_DEPTH then fail("nested too deep") end
    skip()
    local c = text:sub(pos, pos)
    if c == "{" then return object(depth) end
    if c == "[" then return array(depth) end
    if c == '"' then return str() end
    for word, v in pairs({ ["true"] = true, ["false"] = false, ["null"] = NULL }) do
      if text:sub(pos, pos + #word - 1) == word then pos = pos + #word; return v end
    end
    local number = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if number and tonumber(number) then pos = pos + #number; return tonumber(number) end
    fail("unexpected '" .. c .. "'")
  end

  local result = value(0)
  skip()
  if pos <= #text then fail("trailing data") end
  return result
end

local function is_object(v) return getmetatable(v) == OBJECT end
local function absent(v) return v == nil or v == NULL end
local function strings(v)
  if getmetatable(v) ~= ARRAY then return false end
  for _, s in ipairs(v) do
    if type(s) ~= "string" then return false end
  end
  return true
end
-- A struct's field, as Go finds it: by its name in any case (keys differing only by case
-- were refused while decoding, so there is at most one).
local function field(object, name)
  for key, v in pairs(object) do
    if key:lower() == name then return v end
  end
end
local function escape(s) return (s:gsub("%p", "%%%0")) end

local RUN_ID = "(%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x)"
local NAME = "^name=" .. escape(PROJECT) .. "%-run%-" .. RUN_ID .. "$"
local CA_BIND = PROJECT .. "-ca:/tls:ro"

-- The host's resources a container may be given: the project's network, the CA volume
-- read-only, a memory limit. No privilege, capability, device, host path, other
-- container's namespace or volume (every other HostConfig field is refused).
local HOST_CONFIG = {
  networkmode = function(v) return v == PROJECT, "NetworkMode must be " .. PROJECT end,
  binds = function(v)
    if absent(v) then return true end
    if not strings(v) then return false, "Binds must be a list of strings" end
    for _, bind in ipairs(v) do
      if bind ~= CA_BIND then return false, "Binds may hold only " .. CA_BIND end
    end
    return true
  end,
  memory = function(v) return type(v) == "number" and v > 0, "Memory must be a number" end,
}

local function off(name)
  return function(v) return v == false or absent(v), name .. " must be false" end
end
-- an object's keys in order: the first refusal is the same one every time
local function keys(object)
  local out = {}
  for key in pairs(object) do out[#out + 1] = key end
  table.sort(out)
  return out
end

-- Top-level fields: each with its check; any other field is refused.
local FIELDS = {
  image = function(v)
    return type(v) == "string" and v:match("^aps%-etl:[%w][%w._-]*$") ~= nil,
      "only the aps-etl image (aps-etl:<tag>) may be run"
  end,
  cmd = function(v)
    local ok = strings(v) and v[1] == "dagster" and v[2] == "api"
      and (v[3] == "execute_run" or v[3] == "resume_run")
    return ok, "the command must be a run worker's (dagster api execute_run|resume_run)"
  end,
  env = function(v) return absent(v) or strings(v), "Env must be a list of strings" end,
  labels = function(v) return is_object(v), "Labels must be an object" end,
  hostconfig = function(v)
    if absent(v) then return true end
    if not is_object(v) then return false, "HostConfig must be an object" end
    for _, key in ipairs(keys(v)) do
      local check = HOST_CONFIG[key:lower()]
      if not check then return false, "HostConfig." .. key .. " is not allowed" end
      local ok, why = check(v[key])
      if not ok then return false, why end
    end
    return true
  end,
  -- docker-py's high-level create sends {"<network>": null}; Docker ignores it. Nothing
  -- else: an endpoint would join another network.
  networkingconfig = function(v)
    if absent(v) then return true end
    if not is_object(v) then return false, "NetworkingConfig must be an object" end
    for _, setting in pairs(v) do
      if not absent(setting) then return false, "NetworkingConfig may not name a network" end
    end
    return true
  end,
  volumes = function(v)
    if absent(v) then return true end
    if not is_object(v) then return false, "Volumes must be an object" end
    for path, setting in pairs(v) do
      if path ~= "/tls" or not (is_object(setting) and next(setting) == nil) then
        return false, "Volumes may hold only /tls"
      end
    end
    return true
  end,
  tty = off("Tty"), openstdin = off("OpenStdin"), stdinonce = off("StdinOnce"),
  attachstdin = off("AttachStdin"), attachstdout = off("AttachStdout"),
  attachstderr = off("AttachStderr"), networkdisabled = off("NetworkDisabled"),
}

local function check(txn)
  local query = txn.sf:query() or ""
  local run_id = query:match(NAME)
  if not run_id then
    return false, "a run's container is named " .. PROJECT .. "-run-<run id> (and nothing else is asked)"
  end
  local body = txn.sf:req_body() or ""
  local length = tonumber(txn.sf:req_hdr("content-length") or "")
  if not length or length ~= #body then
    return false, "the body must come whole, with its Content-Length"
  end
  local ok, config = pcall(decode, body)
  if not ok then
    return false, type(config) == "table" and config.refusal or "unreadable JSON"
  end
  if not is_object(config) then return false, "the body must be a JSON object" end
  for _, key in ipairs(keys(config)) do
    local check_field = FIELDS[key:lower()]
    if not check_field then return false, key .. " is not allowed" end
    local allowed, why = check_field(config[key])
    if not allowed then return false, why or (key .. " is not allowed as given") end
  end
  if field(config, "image") == nil or field(config, "cmd") == nil then
    return false, "Image and Cmd are required"
  end
  local labels = field(config, "labels")
  if labels == nil or labels["dagster/run_id"] ~= run_id then
    return false, "the label dagster/run_id must be the run id of the container's name"
  end
  local host = field(config, "hostconfig")
  if host == nil or field(host, "networkmode") ~= PROJECT then
    return false, "HostConfig.NetworkMode must be " .. PROJECT
  end
  return true
end

core.register_fetches("docker_create_allowed", function(txn)
  local ok, allowed, why = pcall(check, txn)
  if not ok then
    allowed, why = false, "the proxy could not read the request"
  end
  if not allowed then
    why = tostring(why or "refused")
    txn:set_var("txn.refusal", why)
    core.Warning("docker-api: create refused: " .. why)
  end
  return allowed
end)
