-- The audit is written only by the SECURITY DEFINER change functions (which
-- run as the table's owner): the service role reads it and no longer inserts
-- (no forged rows), and no API role may change or empty it. The owner keeps
-- INSERT for the functions and loses UPDATE, DELETE and TRUNCATE (the
-- triggers refuse them to anyone anyway, a superuser included).
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON public.admin_audit FROM anon, authenticated, service_role;
REVOKE UPDATE, DELETE, TRUNCATE ON public.admin_audit FROM CURRENT_USER;
REVOKE ALL ON SEQUENCE public.admin_audit_id_seq FROM anon, authenticated, service_role;
DROP POLICY admin_audit_service_append ON public.admin_audit;
