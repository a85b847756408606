-- Where a host's tag came from (issue 13; the twin of migrations/sqlite/0410_agent_tag_sources.sql):
-- `assigned` through the API, `reported` by the agent with its inventory
-- (`zerotrace-agent --tag`). Each source replaces only its own set; a row lives while either
-- holds it. Tags stored before were all set through the API.
ALTER TABLE agent_tags ADD COLUMN assigned boolean NOT NULL DEFAULT true,
    ADD COLUMN reported boolean NOT NULL DEFAULT false;
