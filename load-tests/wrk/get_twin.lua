-- wrk: GET /digitaltwins/{id} over a set of twins that run.sh created (twin-0 .. twin-<TWINS-1>).
-- Each thread walks the ids round-robin from its own offset.
local twins = tonumber(os.getenv("TWINS") or "1000")
local counter = 0

function init(args)
  counter = math.random(0, twins - 1)
end

function request()
  counter = (counter + 1) % twins
  return wrk.format("GET", "/digitaltwins/twin-" .. counter .. "?api-version=2023-10-31",
    { ["Authorization"] = "Bearer load-test" })
end

function response(status, headers, body)
  if status ~= 200 then
    error("GET answered " .. status .. ": " .. body)
  end
end
