-- POST /v1/jobs with a small GPU job; counts the 201s (acknowledged = durable) for the report.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"project":"default","command":["python","train.py"],"resources":{"gpus":1},"estimatedRuntimeSeconds":600}'

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  created = 0
  other = 0
end

function response(status, headers, body)
  if status == 201 then created = created + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local c, o = 0, 0
  for _, thread in ipairs(threads) do
    c = c + thread:get("created")
    o = o + thread:get("other")
  end
  io.write(string.format("acknowledged_201 %d\nother_status %d\n", c, o))
end
