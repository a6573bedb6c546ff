-- wrk: the mock's trivial endpoint, GET /_mock/ping (no store, no auth, no limits): the
-- baseline of what actix-web and this machine can do, to compare the data-plane figures with.
function response(status, headers, body)
  if status ~= 200 then
    error("ping answered " .. status)
  end
end
