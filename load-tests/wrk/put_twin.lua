-- wrk: PUT /digitaltwins/{id} (create or replace) over TWINS ids, so the store holds a steady
-- number of twins while every request does the full work of a write: parse, validate, store.
local twins = tonumber(os.getenv("TWINS") or "1000")
local model = os.getenv("MODEL") or "dtmi:twinload:load:Thing;1"
local counter = 0
local headers = { ["Authorization"] = "Bearer load-test", ["Content-Type"] = "application/json" }

function init(args)
  counter = math.random(0, twins - 1)
end

function request()
  counter = (counter + 1) % twins
  local body = '{"$metadata":{"$model":"' .. model .. '"},"name":"twin ' .. counter .. '","n":' .. counter .. '}'
  return wrk.format("PUT", "/digitaltwins/twin-" .. counter .. "?api-version=2023-10-31", headers, body)
end

function response(status, headers, body)
  if status ~= 200 then
    error("PUT answered " .. status .. ": " .. body)
  end
end
