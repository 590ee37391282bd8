-- Wireshark dissector for the GoPro protocol, version 1 (SPEC.md).
--
--   wireshark -X lua_script:contrib/wireshark/gopro.lua
--   tshark -X lua_script:contrib/wireshark/gopro.lua -o gopro.port:9000 -r cap.pcapng -Y gopro
--
-- A frame is an 8-byte big-endian header and its body:
--
--   +--------+--------+--------+--------+--------+--------+--------+--------+-----
--   |  magic 0x47 0x4F | version| command|       body length (u32)           | body
--   +--------+--------+--------+--------+--------+--------+--------+--------+-----
--
-- The dissector is bound to TCP port 8888 (the `gopro.port` preference) and
-- also tries every other TCP conversation heuristically: the magic and
-- version 1 at the start of a segment claim the conversation for good.
--
-- TCP reassembly is done by hand (pinfo.desegment_offset/desegment_len)
-- rather than with dissect_tcp_pdus: on Wireshark 4.0 the latter loses the
-- body when a heuristic dissector meets a segment that holds only a header.

local gopro = Proto("gopro", "GoPro Protocol")

local HEADER_LEN = 8
local MAGIC = 0x474F
local VERSION = 1
-- The default receiver limit (SPEC §2): exactly 10 MiB is accepted.
local MAX_BODY = 10 * 1024 * 1024
local DEFAULT_PORT = 8888

local ERROR = 3
local GOAWAY = 4

-- Every code gets a name, so the tree reads "Application (200)" rather than
-- "Unknown (200)" for codes the SPEC gives to applications.
local command_names = {
    [0] = "HEARTBEAT",
    [1] = "MESSAGE",
    [2] = "LOGIN",
    [ERROR] = "ERROR",
    [GOAWAY] = "GOAWAY",
}
local command_values = {}
for code = 0, 255 do
    if command_names[code] then
        command_values[code] = command_names[code]
    elseif code < 16 then
        command_values[code] = "reserved"
    else
        command_values[code] = "application"
    end
end

-- The Info column names the command; a reserved or application code also
-- shows its number, which is all that tells two of them apart.
local function command_label(code)
    return command_names[code] or (command_values[code] .. " " .. code)
end

local f = {
    magic = ProtoField.uint16("gopro.magic", "Magic", base.HEX),
    version = ProtoField.uint8("gopro.version", "Version", base.DEC),
    command = ProtoField.uint8("gopro.command", "Command", base.DEC, command_values),
    length = ProtoField.uint32("gopro.length", "Body length", base.DEC),
    body = ProtoField.bytes("gopro.body", "Body"),
    reason = ProtoField.string("gopro.reason", "Reason", base.UNICODE),
}
gopro.fields = { f.magic, f.version, f.command, f.length, f.body, f.reason }

local e = {
    bad_magic = ProtoExpert.new("gopro.bad_magic", "Bad magic: not GoPro, or the stream is out of sync",
        expert.group.MALFORMED, expert.severity.ERROR),
    too_large = ProtoExpert.new("gopro.body_too_large", "Body exceeds the 10 MiB limit",
        expert.group.MALFORMED, expert.severity.ERROR),
    bad_version = ProtoExpert.new("gopro.bad_version", "Unsupported protocol version",
        expert.group.PROTOCOL, expert.severity.WARN),
}
gopro.experts = { e.bad_magic, e.too_large, e.bad_version }

gopro.prefs.port = Pref.uint("TCP port", DEFAULT_PORT, "TCP port decoded as GoPro (others are found heuristically)")

-- The header fields that are present in `tvb` from `offset` on (a bad-magic
-- or oversized frame may be cut short); returns the subtree and the items
-- of the fields, by name.
local function add_header(tvb, offset, tree, size)
    local subtree = tree:add(gopro, tvb(offset, size))
    local items = {}
    local available = tvb:len() - offset
    if available >= 2 then items.magic = subtree:add(f.magic, tvb(offset, 2)) end
    if available >= 3 then
        local version = tvb(offset + 2, 1):uint()
        items.version = subtree:add(f.version, tvb(offset + 2, 1))
        if version ~= VERSION then
            items.version:add_proto_expert_info(e.bad_version, "Unsupported protocol version " .. version)
        end
    end
    if available >= 4 then items.command = subtree:add(f.command, tvb(offset + 3, 1)) end
    if available >= HEADER_LEN then items.length = subtree:add(f.length, tvb(offset + 4, 4)) end
    return subtree, items
end

-- One whole frame at `offset`; returns its label for the Info column.
local function dissect_frame(tvb, offset, body_len, tree)
    local code = tvb(offset + 3, 1):uint()
    local subtree = add_header(tvb, offset, tree, HEADER_LEN + body_len)
    local label = command_label(code)
    subtree:append_text(", " .. label .. ", " .. body_len .. " byte body")
    if body_len > 0 then
        local body = tvb(offset + HEADER_LEN, body_len)
        subtree:add(f.body, body)
        if code == ERROR or code == GOAWAY then
            local reason = body:string(ENC_UTF_8)
            subtree:add(f.reason, body, reason)
            label = label .. ' "' .. reason .. '"'
        end
    elseif code == ERROR or code == GOAWAY then
        -- GOAWAY's reason may be empty; the field is there all the same.
        subtree:add(f.reason, tvb(offset + 3, 1), ""):set_generated()
    end
    return label
end

-- A frame that cannot be delimited (bad magic, or a length over the limit):
-- the rest of the segment is shown under it and nothing more is asked for.
-- The expert info goes on the field at fault.
local function dissect_broken(tvb, offset, tree, field, expert_field, text)
    local subtree, items = add_header(tvb, offset, tree, tvb:len() - offset)
    subtree:append_text(", " .. text)
    local at_fault = items[field] or subtree
    at_fault:add_proto_expert_info(expert_field, text)
    if tvb:len() - offset > HEADER_LEN then
        subtree:add(f.body, tvb(offset + HEADER_LEN))
    end
end

function gopro.dissector(tvb, pinfo, tree)
    local total = tvb:len()
    local offset = 0
    local labels = {}
    while offset < total do
        local available = total - offset
        -- Bad magic is reported as soon as its bytes are there, even in a
        -- segment shorter than a header.
        local magic_bad = tvb(offset, 1):uint() ~= 0x47
            or (available >= 2 and tvb(offset, 2):uint() ~= MAGIC)
        if magic_bad then
            local found = available >= 2 and string.format("0x%04X", tvb(offset, 2):uint())
                or string.format("0x%02X..", tvb(offset, 1):uint())
            dissect_broken(tvb, offset, tree, "magic", e.bad_magic,
                "Bad magic " .. found .. ": expected 0x474F (\"GO\")")
            labels[#labels + 1] = "bad magic"
            offset = total
            break
        end
        if available < HEADER_LEN then
            pinfo.desegment_offset = offset
            pinfo.desegment_len = HEADER_LEN - available
            break
        end
        local body_len = tvb(offset + 4, 4):uint()
        if body_len > MAX_BODY then
            dissect_broken(tvb, offset, tree, "length", e.too_large,
                "Body of " .. body_len .. " bytes exceeds the limit of " .. MAX_BODY .. " bytes")
            labels[#labels + 1] = command_label(tvb(offset + 3, 1):uint()) .. " (too large)"
            offset = total
            break
        end
        if available < HEADER_LEN + body_len then
            pinfo.desegment_offset = offset
            pinfo.desegment_len = HEADER_LEN + body_len - available
            break
        end
        labels[#labels + 1] = dissect_frame(tvb, offset, body_len, tree)
        offset = offset + HEADER_LEN + body_len
    end
    if #labels > 0 then
        pinfo.cols.protocol = gopro.name
        pinfo.cols.info = table.concat(labels, ", ")
    end
    -- The whole segment is ours: what was not dissected is held for reassembly.
    return total
end

-- Magic and version 1 at the start of the segment; the rest of the header
-- may still be on its way.
local function heuristic(tvb, pinfo, tree)
    if tvb:len() < 3 or tvb(0, 2):uint() ~= MAGIC or tvb(2, 1):uint() ~= VERSION then
        return false
    end
    -- Later segments of this conversation (replies, a bad frame further on)
    -- go straight to the dissector.
    pinfo.conversation = gopro
    gopro.dissector(tvb, pinfo, tree)
    return true
end
gopro:register_heuristic("tcp", heuristic)

local registered_port = 0
local function register_port()
    local tcp_port = DissectorTable.get("tcp.port")
    if registered_port ~= 0 then tcp_port:remove(registered_port, gopro) end
    registered_port = gopro.prefs.port
    if registered_port ~= 0 then tcp_port:add(registered_port, gopro) end
end
gopro.prefs_changed = register_port
register_port()
