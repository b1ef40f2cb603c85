"""Auth request and response schemas."""
from marshmallow import Schema, ValidationError, fields, validate, validates

from allynet.fields import Email, Name
from allynet.users.schemas import VEHICLE_TYPES, ProfileSchema

PASSWORD_MIN, PASSWORD_MAX_BYTES = 8, 72  # bcrypt reads at most 72 bytes


class RegisterSchema(Schema):
    email = Email(required=True, validate=validate.Length(max=254))
    password = fields.String(required=True, load_only=True, metadata={
        "minLength": PASSWORD_MIN, "maxLength": PASSWORD_MAX_BYTES,
        "description": f"At least {PASSWORD_MIN} characters and at most {PASSWORD_MAX_BYTES} bytes in UTF-8"})
    display_name = Name(required=True, min_len=1, max_len=50)
    vehicle_type = fields.String(validate=validate.OneOf(VEHICLE_TYPES))

    @validates("password")
    def check_password(self, value, **kwargs):
        if len(value) < PASSWORD_MIN:
            raise ValidationError(f"Password must be at least {PASSWORD_MIN} characters.")
        if len(value.encode("utf-8")) > PASSWORD_MAX_BYTES:
            raise ValidationError(f"Password must be at most {PASSWORD_MAX_BYTES} bytes.")


class LoginSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=200))


class LogoutSchema(Schema):
    refresh_token = fields.String(validate=validate.Length(max=4096))



class RenewSchema(Schema):
    token = fields.String(required=True, validate=validate.Length(min=1, max=4096))


class TokenPairSchema(Schema):
    access_token = fields.String()
    refresh_token = fields.String()


class AuthResultSchema(TokenPairSchema):
    user = fields.Nested(ProfileSchema)


register_schema = RegisterSchema()
login_schema = LoginSchema()
logout_schema = LogoutSchema()
renew_schema = RenewSchema()
token_pair_schema = TokenPairSchema()
auth_result_schema = AuthResultSchema()
